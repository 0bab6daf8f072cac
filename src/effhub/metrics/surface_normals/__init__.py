"""Surface normal metric: statistics in `statistics.py`, the `evaluate` module in `surface_normals.py`."""
