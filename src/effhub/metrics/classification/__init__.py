"""Classification metric: statistics in `statistics.py`, the `evaluate` module in `classification.py`."""
