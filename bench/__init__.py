"""Benchmarks (run on purpose, not collected by pytest): ``python -m bench.<name>``."""
