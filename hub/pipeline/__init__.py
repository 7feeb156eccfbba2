"""The per-event pipeline: ingress, device actors, scheduler, session actors, check-in routing, command dispatcher, persistence writer."""
