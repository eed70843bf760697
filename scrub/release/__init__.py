"""Releases: policy variants built in one pass, signed manifests, audit reports, removal lists."""
