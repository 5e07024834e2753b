"""Packaging shim for Beam's ``--setup_file``: Dataflow workers install altcorpus from the sdist built from this.

Everything (name, version, dependencies, packages, package data such as ``pipeline/corpus/sql/*.sql``) is declared in
``pyproject.toml``; setuptools reads it from there. Beam builds the sdist with ``python -m build --sdist`` when
``build`` is installed and falls back to ``python setup.py sdist``, which is why this file exists at all.
"""

from setuptools import Extension, setup

setup(
    # The compiled <img> tag scanner of the extract stage. Optional: without a C compiler the install still
    # succeeds and pipeline.html.images falls back to its pure-Python reference (same results, slower).
    ext_modules=[Extension("pipeline.html._tagscan", ["pipeline/html/_tagscan.c"], optional=True)],
)
