"""Shared infrastructure of the hub that web/ may import: the live bus and its messages, configuration, passwords, clock, campus timezone, commit records, metrics."""
