"""Multi-label metric: statistics in `statistics.py`, the `evaluate` module in `multilabel.py`."""
