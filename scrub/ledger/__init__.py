"""The takedown-request ledger: requests, their sealed items, and an event history whose chain
is keyed with the ledger key and from which every request's state is re-derived."""
