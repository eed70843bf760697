"""The takedown-request ledger: requests, their items, and a hash-chained event history."""
