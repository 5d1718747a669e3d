"""Readers (WARC, WET, JSONL, Parquet, HF datasets) and the Parquet shard writer."""
