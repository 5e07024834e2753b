"""altcorpus trainer: open_clip on altcorpus shards, with evaluation."""
