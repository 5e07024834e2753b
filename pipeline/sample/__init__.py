"""The bundled sample web archive, generated from images that ship inside pip packages."""
