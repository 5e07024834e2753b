"""The five Beam stages of the data path, one module each: extract, filter_text, fetch, filter_image, write_shards."""
