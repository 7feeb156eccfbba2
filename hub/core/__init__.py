"""Shared infrastructure of the hub that web/ may import.

The live bus and its messages, configuration, passwords, clock, campus
timezone, commit records, metrics.
"""
