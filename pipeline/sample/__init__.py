"""The bundled sample web archive, generated from images that ship inside pip packages (``make-sample``).

- ``builder``: the in-memory sample (``SampleBuilder``), the ordinary pages, ``generate_sample`` and the command.
- ``cases/``: the planted cases, one module per stage whose rules they exercise (extraction, text_rules, image_rules).
- ``pools`` and ``pools/*.json``: the words (alt-text subjects and contexts, per-language page text, listing titles)
  and the table of packaged photos.
- ``photos``: loading, cropping and encoding those photos; ``alt_texts``: alt normalisation and the unique-alt writer.
- ``records``: the pages and image responses archived; ``hosts``: the invented sites.
- ``warc_writer``: ``sample.warc.gz``; ``oracle``: fates and ``expected.json``.
"""
