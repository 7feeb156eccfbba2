"""The composition root and entry points: supervision tree, CLI and sub-CLIs, simulator.

The only part of hub/ that may import web/.
"""
