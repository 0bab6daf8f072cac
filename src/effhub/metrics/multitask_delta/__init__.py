"""Multi-task relative improvement (Delta_T): the computation in `statistics.py`, the `evaluate` module in
`multitask_delta.py`."""
