"""Training: time-ordered split, LightGBM fit and tuning, calibration, routing thresholds, the
model card and plots, MLflow runs and the registry's write side (challengers, promotion)."""
