"""The loop core every fit shares: its batches and its validation bookkeeping.

`fit` trains one network, `fit_stacked` F folds side by side under `vmap`; both draw their
batches from `batch_rng(key)` and keep their validation history, best step and early
stopping in one `EarlyStopping` (F = 1 for `fit`), so the two loops cannot drift apart.
"""

from __future__ import annotations

import jax
import numpy as np


def batch_rng(key) -> np.random.Generator:
    """The NumPy generator a fit draws its batch indices from, seeded by its JAX key."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1].item())


class EarlyStopping:
    """Validation bookkeeping of `n` fits trained side by side.

    Each evaluation of the fits still training appends one history entry per fit; a fit
    whose validation loss is the lowest so far records that step as its best; a fit that
    has gone `patience` evaluations without improving stops.
    """

    def __init__(self, n: int, patience: int):
        self.patience = patience
        self.best = np.full(n, np.inf)
        self.best_step = np.zeros(n, int)
        self.bad = np.zeros(n, int)
        self.histories: list[list[dict]] = [[] for _ in range(n)]
        self.active = np.ones(n, bool)

    def record(self, step: int, loss, data, physics, val_loss, val_data, val_physics):
        """Record the evaluation at `step` (each value an array of `n`, or a scalar for one
        fit). Returns (the fits evaluated, a mask of those that improved, those that
        stopped here)."""
        loss, data, physics, val_loss, val_data, val_physics = (
            np.atleast_1d(np.asarray(x, np.float64))
            for x in (loss, data, physics, val_loss, val_data, val_physics))
        evaluated = np.flatnonzero(self.active)
        improved = np.zeros(len(self.active), bool)
        stopped = []
        for f in evaluated:
            self.histories[f].append({
                "step": step, "loss": float(loss[f]), "data": float(data[f]),
                "physics": float(physics[f]), "val_loss": float(val_loss[f]),
                "val_data": float(val_data[f]), "val_physics": float(val_physics[f])})
            if float(val_loss[f]) < self.best[f]:
                self.best[f], self.best_step[f], self.bad[f] = float(val_loss[f]), step, 0
                improved[f] = True
            else:
                self.bad[f] += 1
            if self.bad[f] >= self.patience:
                stopped.append(int(f))
        self.active[stopped] = False
        return evaluated, improved, stopped
