"""Muscle path geometry: MTU length as a polynomial in the joint angles.

Moment arms are r = −∂l_MT/∂q by autodiff of the same polynomial, so lengths, lengthening
velocities (−r·q̇) and joint moments (rᵀF) are consistent by construction. Polynomial
surrogates of OpenSim paths (via points, conditional points, wrapping surfaces) follow
Sobinov et al. (2020), "Approximating complex musculoskeletal biomechanics using
multidimensional autogenerating polynomials", PLoS Comput. Biol. 16:e1008350.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


def monomial_exponents(n_dofs: int, degree: int) -> tuple[tuple[int, ...], ...]:
    """All exponent tuples of total degree ≤ `degree` in `n_dofs` variables, graded order."""
    out = []
    for d in range(degree + 1):
        for combo in itertools.product(range(d + 1), repeat=n_dofs):
            if sum(combo) == d:
                out.append(tuple(combo))
    return tuple(out)


class PolynomialPath(eqx.Module):
    """l_MT(q) = Σ_k c_{m,k}·Π_j ((q_j − centre_j)/scale_j)^{e_{k,j}} for every muscle m.

    Attributes:
        coefficients: (n_muscles, n_terms) polynomial coefficients (m).
        centre, scale: (n_dofs,) the coordinates are normalised as (q − centre)/scale (rad)
            so the fit is well conditioned over the coordinates' ranges.
        exponents: static (n_terms, n_dofs) exponents of the monomials.
        fit_rms, fit_max: static per-muscle held-out length errors (m) of the fit that made
            this path (empty when the path was not fitted), on the samples kept.
        fit_outliers: samples left out of the fit because the sampled length jumped there.
    """

    coefficients: Float[Array, "muscles terms"]
    centre: Float[Array, " dofs"]
    scale: Float[Array, " dofs"]
    exponents: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    fit_rms: tuple[float, ...] = eqx.field(static=True, default=())
    fit_max: tuple[float, ...] = eqx.field(static=True, default=())
    fit_outliers: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        n_terms, n_dofs = len(self.exponents), len(self.exponents[0]) if self.exponents else 0
        if self.coefficients.ndim != 2 or self.coefficients.shape[1] != n_terms:
            raise ValueError(
                f"PolynomialPath.coefficients has shape {self.coefficients.shape}; expected "
                f"(n_muscles, {n_terms}) for {n_terms} monomials."
            )
        if self.centre.shape != (n_dofs,) or self.scale.shape != (n_dofs,):
            raise ValueError(
                f"PolynomialPath.centre/scale must have shape ({n_dofs},), got "
                f"{self.centre.shape} and {self.scale.shape}."
            )

    @property
    def n_muscles(self) -> int:
        return self.coefficients.shape[0]

    @property
    def n_dofs(self) -> int:
        return self.centre.shape[0]

    def _features(self, q: Array) -> Array:
        x = (q - self.centre) / self.scale
        # Table of powers x_j^k, k = 0..degree, by repeated products (finite gradients at
        # x = 0, unlike jnp.power with array exponents), then one gather per monomial.
        table = [jnp.ones_like(x)]
        for _ in range(self.degree):
            table.append(table[-1] * x)
        table = jnp.stack(table, axis=-1)  # (dofs, degree + 1)
        exps = np.asarray(self.exponents)  # (terms, dofs), static
        return jnp.prod(table[np.arange(self.n_dofs)[None, :], exps], axis=-1)

    def length(self, q: Float[ArrayLike, " dofs"]) -> Float[Array, " muscles"]:
        """MTU lengths l_MT(q) (m) for joint angles q (rad), shape (n_dofs,)."""
        q = jnp.asarray(q)
        if q.shape != (self.n_dofs,):
            raise ValueError(f"q has shape {q.shape}; the path expects ({self.n_dofs},). "
                             "Use jax.vmap for time series or batches.")
        return self.coefficients @ self._features(q)

    def moment_arms(self, q: Float[ArrayLike, " dofs"]) -> Float[Array, "muscles dofs"]:
        """Moment arms r = −∂l_MT/∂q (m), shape (n_muscles, n_dofs)."""
        return -jax.jacfwd(self.length)(jnp.asarray(q))

    def length_and_moment_arms(self, q: Float[ArrayLike, " dofs"]):
        """(l_MT (m), r (m)) in one forward-mode pass."""
        jac, length = jax.jacfwd(lambda x: (self.length(x), self.length(x)), has_aux=True)(
            jnp.asarray(q))
        return length, -jac

    @classmethod
    def fit(
        cls,
        q: Float[ArrayLike, "samples dofs"],
        lengths: Float[ArrayLike, "samples muscles"],
        *,
        max_degree: int = 8,
        holdout: float = 0.25,
        seed: int = 0,
        ranges: Float[ArrayLike, "dofs 2"] | None = None,
        robust: bool = True,
    ) -> "PolynomialPath":
        """Least-squares fit, with the total degree chosen by held-out error.

        For each degree 1 … max_degree the polynomial is fitted on a random (1 − holdout)
        share of the samples and scored by the worst muscle's RMS error on the rest; the
        degree with the smallest held-out error is refitted on all samples. The held-out
        RMS and max errors (m) of the chosen degree are stored in `fit_rms`, `fit_max`.

        Args:
            q: joint angles (rad), (n_samples, n_dofs).
            lengths: MTU lengths (m), (n_samples, n_muscles).
            ranges: (n_dofs, 2) coordinate ranges for normalisation (default: sample range).
            robust: leave out samples where the sampled lengths jump (see below); their
                number is stored in `fit_outliers`.
        """
        q = np.asarray(q, dtype=np.float64)
        y = np.asarray(lengths, dtype=np.float64)
        if q.ndim != 2 or y.ndim != 2 or q.shape[0] != y.shape[0]:
            raise ValueError(
                f"PolynomialPath.fit needs q (samples, dofs) and lengths (samples, muscles) with "
                f"the same number of samples; got {q.shape} and {y.shape}."
            )
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(y))):
            raise ValueError("PolynomialPath.fit: q or lengths contain NaN or inf.")
        lo, hi = (q.min(0), q.max(0)) if ranges is None else np.asarray(ranges, np.float64).T
        centre = 0.5 * (lo + hi)
        scale = np.where(hi > lo, 0.5 * (hi - lo), 1.0)
        x = (q - centre) / scale
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(q))
        n_test = max(1, int(round(holdout * len(q))))
        test, train = perm[:n_test], perm[n_test:]

        def design(exps, xs):
            e = np.asarray(exps)
            return np.prod(xs[:, None, :] ** e[None, :, :], axis=-1)

        # Samples where the sampled path jumps (e.g. an OpenSim wrapping surface switching
        # solution) would drag a global polynomial far off everywhere; they are found by a
        # first fit (residual > 10 robust standard deviations and > 1 mm) and left out.
        keep = np.ones(len(q), bool)
        if robust:
            exps0 = monomial_exponents(q.shape[1], min(max_degree, 6))
            coef0, *_ = np.linalg.lstsq(design(exps0, x), y, rcond=None)
            res = np.abs(design(exps0, x) @ coef0 - y)
            mad = 1.4826 * np.median(res, axis=0)
            keep = np.all((res <= 10 * mad) | (res <= 1e-3), axis=1)
        train, test = train[keep[train]], test[keep[test]]

        best = None
        for degree in range(1, max_degree + 1):
            exps = monomial_exponents(q.shape[1], degree)
            if len(exps) > len(train):
                break
            coef, *_ = np.linalg.lstsq(design(exps, x[train]), y[train], rcond=None)
            err = design(exps, x[test]) @ coef - y[test]
            rms = np.sqrt(np.mean(err**2, axis=0))
            score = float(rms.max())
            if best is None or score < best[0] * (1 - 1e-3):
                best = (score, exps, rms, np.abs(err).max(axis=0))
        _, exps, rms, mx = best
        coef, *_ = np.linalg.lstsq(design(exps, x[keep]), y[keep], rcond=None)
        dtype = jnp.result_type(float)
        return cls(coefficients=jnp.asarray(coef.T, dtype), centre=jnp.asarray(centre, dtype),
                   scale=jnp.asarray(scale, dtype), exponents=exps,
                   fit_rms=tuple(float(v) for v in rms), fit_max=tuple(float(v) for v in mx),
                   fit_outliers=int((~keep).sum()))

    @property
    def degree(self) -> int:
        """Total degree of the polynomial."""
        return max(sum(e) for e in self.exponents)

    def to_dict(self) -> dict:
        """Plain-Python form for storing as JSON (see `from_dict`)."""
        return dict(coefficients=np.asarray(self.coefficients).tolist(),
                    centre=np.asarray(self.centre).tolist(), scale=np.asarray(self.scale).tolist(),
                    exponents=[list(e) for e in self.exponents], fit_rms=list(self.fit_rms),
                    fit_max=list(self.fit_max), fit_outliers=self.fit_outliers)

    @classmethod
    def from_dict(cls, d: dict) -> "PolynomialPath":
        dtype = jnp.result_type(float)
        return cls(coefficients=jnp.asarray(d["coefficients"], dtype),
                   centre=jnp.asarray(d["centre"], dtype), scale=jnp.asarray(d["scale"], dtype),
                   exponents=tuple(tuple(int(v) for v in e) for e in d["exponents"]),
                   fit_rms=tuple(d.get("fit_rms", ())), fit_max=tuple(d.get("fit_max", ())),
                   fit_outliers=int(d.get("fit_outliers", 0)))


__all__ = ["PolynomialPath", "monomial_exponents"]
