"""`curate tokenize`: curated text to train-ready token shards (Megatron indexed dataset, nanoGPT)."""
