"""Common Crawl input by crawl id (``listing``, ``stream``) and the crawl simulator (``simulate``)."""
