"""Reading web archives: WARC/WAT records, charsets, <img> finding (compiled scanner + reference), URLs, alt text."""
