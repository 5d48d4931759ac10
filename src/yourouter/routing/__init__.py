"""Routing: which deployments may serve a request."""
