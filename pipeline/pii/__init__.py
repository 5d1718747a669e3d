"""Detectors of personal data and secrets for the `pii` stage, one kind per module.

Each detector takes a text and returns the `Found` items of its kind (character offsets and a
normalised value), validated beyond the regex (checksums, address ranges, phone metadata).
"""
