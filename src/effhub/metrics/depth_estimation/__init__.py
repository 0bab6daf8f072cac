"""Depth estimation metric: statistics in `statistics.py`, the `evaluate` module in `depth_estimation.py`."""
