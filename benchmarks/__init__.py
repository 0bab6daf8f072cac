"""effhub's benchmarks: each sub-package measures a method against its baseline in the same run.

A benchmark is a folder `benchmarks/<name>/` with a `run.py` exposing `main(argv) -> int`; it prints a table and
writes JSON (`benchmarks/results/<name>.json` by default). Ratios, not absolute times: the machines are shared.
"""
