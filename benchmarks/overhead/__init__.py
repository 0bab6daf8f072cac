"""Library-overhead benchmark: the run layer against a bare loop, from_pretrained against loading by hand, CLI start."""
