"""Label budget allocation benchmark (`python -m benchmarks budget`)."""
