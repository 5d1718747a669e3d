"""Side-by-side benchmark harness: our pipeline against HuggingFace datatrove (issue #8).

Run from the repository root: `.venv/bin/python -m scripts.bench --help`. See `run.py`.
"""
