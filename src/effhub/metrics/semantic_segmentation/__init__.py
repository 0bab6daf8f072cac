"""Semantic segmentation metric: statistics (torch, no `evaluate`) in `statistics.py`, the `evaluate` module in
`semantic_segmentation.py`."""
