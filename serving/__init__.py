"""The scoring service (BentoML): requests, keys and roles, batching, the decision log; the served
model itself is `serving.model`. Nothing here imports `training`."""
