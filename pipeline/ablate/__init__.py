"""Ablations: variants of a recipe side by side, sharing the work they have in common."""
