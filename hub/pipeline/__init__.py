"""The per-event pipeline.

Ingress, device actors, scheduler, session actors, check-in routing, command dispatcher, persistence writer.
"""
