"""One program per benchmark mode; each is run as a script by ``benchmarks/run.py``."""
