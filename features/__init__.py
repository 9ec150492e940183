"""Claims and features: the canonical schema, configuration and errors everything imports; the
catalog, point-in-time primitives and `build_features` (one code path for tables and live claims)."""
