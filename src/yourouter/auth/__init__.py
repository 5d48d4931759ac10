"""Authentication of client keys and the master key."""
