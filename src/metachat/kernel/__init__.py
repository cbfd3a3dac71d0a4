"""Shared kernel: ids, clock, errors, actors and logging. Pure; no I/O libraries."""
