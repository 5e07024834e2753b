"""altcorpus pipeline: the Beam stages that turn web crawls into WebDataset shards."""
