"""The tools a user would pick instead of scrub, each a script run as a fresh process by the
benchmarks: a bare polars copy, a DuckDB ``NOT IN`` copy, a polars anti-join and a polars
two-variant release. Each takes ``DATASET ... OUTPUT --workers N`` and prints the rows it wrote."""
