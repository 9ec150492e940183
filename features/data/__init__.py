"""Claims in: sources and the mapping language (CSV, Parquet, SQL), the synthetic generator, and
validation with great-expectations."""
