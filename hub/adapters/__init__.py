"""Outbound adapters: the broker's password/ACL files (Mosquitto) and the webhook HTTP transport."""
