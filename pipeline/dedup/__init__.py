"""Deduplication stages: MinHash LSH near-duplicates (`minhash`), exact document, line and
substring dedup (their own modules)."""
