"""Execution: units of work, executors (local, Ray), accounting, resume and reports."""
