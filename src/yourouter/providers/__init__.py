"""Upstream protocols: one module per wire protocol, mapped by `registry`."""
