"""Wiring the stages together: the `claimscore` command (one module per area), the demo, and a
local server for tests and benchmarks."""
