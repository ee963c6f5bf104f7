"""Identification of muscle parameters from recorded movements (`jaxmsk.identify`).

- `identify.py`: the public entry point, trials, results, synthetic trials.
- `problem.py`: the problem: which parameters, their units, multiple shooting.
- `optim.py`: the loss, its gradient and the solver loop.
"""
