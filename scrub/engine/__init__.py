"""The match engine: rules, plans, the pure kernel and the executors that run it over shards."""
