"""Benchmarks: `python -m bench.bench [--scale F]` (or `make bench`)."""
