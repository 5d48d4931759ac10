"""Observability: structured request logs."""
