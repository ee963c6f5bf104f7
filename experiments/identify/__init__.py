"""Identification study: `python -m experiments.identify.run`."""
