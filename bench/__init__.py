"""Benchmarks, one per capability: ``python -m bench.NAME`` (from the repository root) prints and writes
bench/results/NAME.json. Data paths are arguments, never fixed temporary folders."""
