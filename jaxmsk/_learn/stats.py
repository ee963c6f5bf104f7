"""Paired statistics over leave-one-subject-out folds: is method A better than method B?"""

from __future__ import annotations

import math
import warnings

import numpy as np


def paired_comparison(a, b) -> dict:
    """Paired comparison of two methods' errors over the same folds (lower is better).

    Args:
        a, b: (folds,) errors of method A and of method B on the same folds (e.g. angle RMSE
            in rad).

    Returns {"n": folds, "mean_a", "mean_b", "mean_difference" (mean of a − b; negative: A
    better), "ci95" ((lo, hi) of the mean difference, Student's t), "relative_difference"
    (mean_difference / mean_b), "wins" (folds with a < b), "wilcoxon_p" (two-sided
    Wilcoxon signed-rank p, exact for small n; None for fewer than 2 folds or when every
    difference is 0)}. With 5 folds the smallest attainable two-sided p is 0.0625, with 6
    it is 0.031: fewer than 6 folds can never give p < 0.05."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_comparison: a and b must be equal-length 1-d, got shapes "
                         f"{a.shape} and {b.shape}.")
    d = a - b
    n = len(d)
    mean = float(d.mean())
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        ci = (mean - half, mean + half)
    else:
        ci = (float("nan"), float("nan"))
    p = None
    if n > 1 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's small-sample notes
            p = float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)
    mb = float(b.mean())
    return {"n": n, "mean_a": float(a.mean()), "mean_b": mb, "mean_difference": mean,
            "ci95": ci, "relative_difference": mean / mb if mb != 0 else float("nan"),
            "wins": int(np.sum(a < b)), "wilcoxon_p": p}


__all__ = ["paired_comparison"]
