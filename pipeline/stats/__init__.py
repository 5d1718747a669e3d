"""Unique-sequence statistics and scaling-law fits (`curate stats`, `curate fit`).

Counting: inputs (run directory / data, per-stage sets), tokenizers, hashing, scan (phase 1),
counting (phases 2-3, exact; shuffle files of io/shuffle.py), hll (approximate), compute (driver),
report and plots (outputs). Fitting: laws (reference laws and constants), fit_powerlaw,
fit_chinchilla, fit (driver), plots_fit.
"""
