"""Watching decisions: the metrics training and monitoring share (ranking, calibration, lift,
slices, routing KPIs) and evaluation of the champions on labelled claims."""
