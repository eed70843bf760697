"""Benchmarks: one command each, printing figures and ratios against a baseline."""
