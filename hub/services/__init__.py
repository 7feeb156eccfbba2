"""Timer-driven service actors: attendance warnings, webhooks, tickets, telemetry maintenance, garbage-collector policy."""
