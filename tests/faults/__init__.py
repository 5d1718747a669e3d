"""Fault injection: hostile inputs, bad configs, full disks, crashes; end to end through the CLI."""
