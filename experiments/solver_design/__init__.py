"""Derivation of StabilizedRK3's coefficients: `python -m experiments.solver_design.design`."""
