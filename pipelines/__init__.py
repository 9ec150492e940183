"""Wiring the stages together: the `claimscore` command (one module per area), Dask beyond one
machine, the demo, and a local server for tests and benchmarks."""
