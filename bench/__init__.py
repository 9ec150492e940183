"""Benchmarks: `make bench` (`python -m bench.run [NAME ...]`) writes bench/RESULTS.md."""
