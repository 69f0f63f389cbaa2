"""Benchmarks, one per capability: ``python bench/NAME.py`` prints and writes bench/results/NAME.json."""
