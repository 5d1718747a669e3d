"""Pretraining data curation: WARC in, clean deduplicated Parquet out, on Ray."""

__version__ = "0.1.0"
