"""The request pipeline: authenticate -> parse -> route -> attempt (failover) -> relay -> meter."""
