"""Metering: the usage ledger."""
