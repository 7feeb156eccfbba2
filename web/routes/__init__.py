"""Blueprints: account (login/logout/home), role pages, the JSON API, websockets, health and metrics."""
