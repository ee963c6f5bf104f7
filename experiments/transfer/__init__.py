"""Leave-one-subject-out transfer study: `python -m experiments.transfer.run`."""
