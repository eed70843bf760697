"""The ledger's fixed vocabularies, importable without SQLAlchemy (the CLI lists them)."""

KINDS = ("gdpr_erasure", "copyright", "safety", "other")
STATUSES = ("received", "verified", "rejected", "scheduled", "applied", "closed", "withdrawn")
ITEM_TYPES = ("url", "url_prefix", "host", "domain", "md5", "sha1", "sha256", "pdq", "phash",
              "sample_key", "caption_term")
STAFF_ROLES = ("reviewer", "admin")
