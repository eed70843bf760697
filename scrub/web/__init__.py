"""``scrub serve``: the takedown intake page for data subjects and the review console for staff,
on the ledger (Starlette, Jinja2 templates, uvicorn). No form needs JavaScript; every page is
self-contained (no external asset). Security measures and why: SECURITY.md, "Web console"."""
