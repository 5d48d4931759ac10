"""Inbound HTTP: one module per API family. Thin: parse -> pipeline -> render."""
