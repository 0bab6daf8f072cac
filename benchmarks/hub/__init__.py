"""Load check of the local hub (`python -m benchmarks.hub`)."""
