"""Hash and key types, list parsers and (later) the versioned list store."""
