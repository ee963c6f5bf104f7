"""Muscle path geometry: MTU length as a polynomial in the joint angles.

Moment arms are r = −∂l_MT/∂q by autodiff of the same polynomial, so lengths, lengthening
velocities (−r·q̇) and joint moments (rᵀF) are consistent by construction. Polynomial
surrogates of OpenSim paths (via points, conditional points, wrapping surfaces) follow
Sobinov et al. (2020), "Approximating complex musculoskeletal biomechanics using
multidimensional autogenerating polynomials", PLoS Comput. Biol. 16:e1008350.
"""

from __future__ import annotations

import itertools
import math

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


# `length_and_moment_arms` contracts a dense coefficient tensor of (degree + 1)^n_dofs
# entries per muscle while it has at most this many (arm26: 11² = 121), else it gathers
# the monomials (a tensor grows exponentially with the coordinates).
DENSE_MAX_ENTRIES = 4096


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
        fit_moment_arm_rms, fit_moment_arm_max: static per-muscle held-out moment-arm errors
            (m) when the fit was given moment arms (empty otherwise).
        domain: static ((min, max), ...) per coordinate (rad): the box the polynomial was
            fitted or is valid over; empty when unknown. Outside it the fit's errors above
            do not hold (`outside_domain`, `domain_excursion`).
        extrapolation: static, how lengths continue beyond `domain`: "linear" (default:
            the tangent plane at the nearest point of the box, so moment arms stay at their
            boundary values; continuous with continuous first derivatives) or "polynomial"
            (the polynomial itself, which a high degree makes grow fast: arm26's fitted
            brachialis shortens to its tendon's slack length 0.6 rad past its elbow range and
            the simulation stalls there).
    """

    coefficients: Float[Array, "muscles terms"]
    centre: Float[Array, " dofs"]
    scale: Float[Array, " dofs"]
    exponents: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    fit_rms: tuple[float, ...] = eqx.field(static=True, default=())
    fit_max: tuple[float, ...] = eqx.field(static=True, default=())
    fit_outliers: int = eqx.field(static=True, default=0)
    fit_moment_arm_rms: tuple[float, ...] = eqx.field(static=True, default=())
    fit_moment_arm_max: tuple[float, ...] = eqx.field(static=True, default=())
    domain: tuple[tuple[float, float], ...] = eqx.field(static=True, default=())
    extrapolation: str = eqx.field(static=True, default="linear")

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
        if self.extrapolation not in ("linear", "polynomial"):
            raise ValueError(f"PolynomialPath.extrapolation must be 'linear' or 'polynomial', "
                             f"got {self.extrapolation!r}.")
        if self.domain and (len(self.domain) != n_dofs
                            or any(len(b) != 2 or not b[0] <= b[1] for b in self.domain)):
            raise ValueError(f"PolynomialPath.domain must be {n_dofs} (min, max) pairs with "
                             f"min <= max, got {self.domain}.")

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

    def outside_domain(self, q: Float[ArrayLike, "... dofs"], tol: float = 1e-6) -> Array:
        """True where a pose q (rad; any leading axes) lies outside `domain` by more than
        `tol` rad in some coordinate (False everywhere when the domain is unknown)."""
        q = jnp.asarray(q)
        if not self.domain:
            return jnp.zeros(q.shape[:-1], bool)
        box = np.asarray(self.domain, np.float64)
        return jnp.any((q < box[:, 0] - tol) | (q > box[:, 1] + tol), axis=-1)

    def domain_excursion(self, q: Float[ArrayLike, "... dofs"]) -> Array:
        """How far (rad) each coordinate of the poses q goes beyond `domain`, the largest
        over the leading axes: shape (n_dofs,), 0 where it stays inside."""
        q = jnp.asarray(q).reshape(-1, self.n_dofs)
        if not self.domain:
            return jnp.zeros(self.n_dofs, q.dtype)
        box = jnp.asarray(np.asarray(self.domain), q.dtype)
        q = jnp.where(jnp.isnan(q), box.mean(axis=1), q)  # a failed solve's NaNs: no verdict
        below = jnp.max(box[:, 0] - q, axis=0)
        above = jnp.max(q - box[:, 1], axis=0)
        return jnp.maximum(jnp.maximum(below, above), 0.0)

    def _clipped(self, q: Array) -> Array | None:
        """q clipped into `domain` where the path extends linearly beyond it, else None."""
        if not self.domain or self.extrapolation != "linear":
            return None
        box = np.asarray(self.domain, np.float64)
        return jnp.clip(q, jnp.asarray(box[:, 0], q.dtype), jnp.asarray(box[:, 1], q.dtype))

    def length(self, q: Float[ArrayLike, " dofs"]) -> Float[Array, " muscles"]:
        """MTU lengths l_MT(q) (m) for joint angles q (rad), shape (n_dofs,)."""
        q = jnp.asarray(q)
        if q.shape != (self.n_dofs,):
            raise ValueError(f"q has shape {q.shape}; the path expects ({self.n_dofs},). "
                             "Use jax.vmap for time series or batches.")
        qc = self._clipped(q)
        if qc is None:
            return self.coefficients @ self._features(q)
        # Outside the box: the tangent at the nearest point of the box (C¹ there).
        value, slope = jax.jvp(lambda x: self.coefficients @ self._features(x), (qc,), (q - qc,))
        return value + slope

    def moment_arms(self, q: Float[ArrayLike, " dofs"]) -> Float[Array, "muscles dofs"]:
        """Moment arms r = −∂l_MT/∂q (m), shape (n_muscles, n_dofs)."""
        return -jax.jacfwd(self.length)(jnp.asarray(q))

    def length_and_moment_arms(self, q: Float[ArrayLike, " dofs"]):
        """(l_MT (m), r (m)) in one pass: the monomials and their partial derivatives from
        one table of powers (the same values as `length` and −jacfwd(`length`), cheaper
        inside a solver loop than forward-mode autodiff)."""
        q = jnp.asarray(q)
        if q.shape != (self.n_dofs,):
            raise ValueError(f"q has shape {q.shape}; the path expects ({self.n_dofs},). "
                             "Use jax.vmap for time series or batches.")
        qc = self._clipped(q)
        if qc is not None:
            length, arms = self._length_and_moment_arms(qc)
            return length - arms @ (q - qc), arms  # the tangent beyond the box; r constant
        return self._length_and_moment_arms(q)

    def _length_and_moment_arms(self, q: Array):
        x = (q - self.centre) / self.scale
        powers = [jnp.ones_like(x)]
        for _ in range(self.degree):
            powers.append(powers[-1] * x)
        table = jnp.stack(powers, axis=-1)  # (dofs, degree + 1): x_j^k
        if (self.degree + 1) ** self.n_dofs <= DENSE_MAX_ENTRIES:
            return self._dense_length_and_moment_arms(table)
        exps = np.asarray(self.exponents)  # (terms, dofs), static
        rows = np.arange(self.n_dofs)[None, :]
        factors = table[rows, exps]  # (terms, dofs): x_j^{e_j}
        features = jnp.prod(factors, axis=-1)
        grads = []
        for j in range(self.n_dofs):
            # ∂/∂x_j: e_j·x_j^{e_j − 1}·Π_{k≠j} x_k^{e_k}; zero where e_j = 0.
            lowered = table[j, np.maximum(exps[:, j] - 1, 0)] * exps[:, j]
            others = jnp.prod(jnp.where(np.arange(self.n_dofs)[None, :] == j, 1.0, factors),
                              axis=-1)
            grads.append(lowered * others / self.scale[j])
        jac = self.coefficients @ jnp.stack(grads, axis=-1)  # (muscles, dofs)
        return self.coefficients @ features, -jac

    def _dense_length_and_moment_arms(self, table: Array):
        """`length_and_moment_arms` as contractions of a dense coefficient tensor
        C[m, e_0, …, e_{n−1}] (zero where Σe > degree) with the per-coordinate power vectors
        and their derivatives: matrix products only, no gathers. Under vmap on CPU this is
        about 2× faster than the gather form (arm26: 0.21 against 0.41 µs per state at batch
        1024), and is used while the tensor has at most `DENSE_MAX_ENTRIES` entries per
        muscle."""
        n, deg = self.n_dofs, self.degree
        exps = np.asarray(self.exponents)
        index = (slice(None),) + tuple(exps[:, j] for j in range(n))
        dense = jnp.zeros((self.n_muscles,) + (deg + 1,) * n,
                          self.coefficients.dtype).at[index].set(self.coefficients)
        k = jnp.arange(deg + 1, dtype=table.dtype)
        # d/dx_j of x_j^k = k·x_j^(k−1): the power table shifted by one, times k.
        dtable = jnp.concatenate([jnp.zeros_like(table[:, :1]), table[:, :-1]], axis=-1) * k

        def contract(vectors):
            out = dense
            for v in reversed(vectors):  # the last axis each time
                out = out @ v
            return out  # (muscles,)

        length = contract([table[j] for j in range(n)])
        jac = jnp.stack([contract([dtable[j] if i == j else table[i] for i in range(n)])
                         for j in range(n)], axis=-1) / self.scale
        return length, -jac

    @classmethod
    def fit(
        cls,
        q: Float[ArrayLike, "samples dofs"],
        lengths: Float[ArrayLike, "samples muscles"],
        moment_arms: Float[ArrayLike, "samples muscles dofs"] | None = None,
        *,
        max_degree: int = 8,
        holdout: float = 0.25,
        seed: int = 0,
        ranges: Float[ArrayLike, "dofs 2"] | None = None,
        robust: bool = True,
    ) -> "PolynomialPath":
        """Least-squares fit, with the total degree chosen by held-out error.

        For each degree 1 … max_degree the polynomial is fitted on a random (1 − holdout)
        share of the samples and scored per muscle by its held-out RMS error; each muscle is
        refitted on all samples at its own best degree (`degree` is the largest). The held-out
        RMS and max errors (m) of the chosen degree are stored in `fit_rms`, `fit_max` (and
        `fit_moment_arm_rms`, `fit_moment_arm_max`).

        Args:
            q: joint angles (rad), (n_samples, n_dofs).
            lengths: MTU lengths (m), (n_samples, n_muscles).
            moment_arms: optional sampled moment arms r = −∂l_MT/∂q (m), (n_samples,
                n_muscles, n_dofs), e.g. OpenSim's `computeMomentArm`. They enter the least
                squares as extra rows (a Hermite fit, lengths and moment arms weighted alike
                with q in rad) and the held-out score, so the moments the model produces
                follow the sampled ones, not only the lengths. Non-finite moment arms (OpenSim
                returns NaN where a wrap fails) are left out.
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
        n_samples, n_dofs = q.shape
        n_muscles = y.shape[1]
        if moment_arms is not None:
            ma = np.asarray(moment_arms, dtype=np.float64)
            if ma.shape != (n_samples, n_muscles, n_dofs):
                raise ValueError(f"PolynomialPath.fit: moment_arms has shape {ma.shape}; expected "
                                 f"(samples, muscles, dofs) = {(n_samples, n_muscles, n_dofs)}.")
        lo, hi = (q.min(0), q.max(0)) if ranges is None else np.asarray(ranges, np.float64).T
        centre = 0.5 * (lo + hi)
        scale = np.where(hi > lo, 0.5 * (hi - lo), 1.0)
        x = (q - centre) / scale
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n_samples)
        n_test = max(1, int(round(holdout * n_samples)))
        test, train = perm[:n_test], perm[n_test:]

        def design(exps, xs):
            e = np.asarray(exps)
            return np.prod(xs[:, None, :] ** e[None, :, :], axis=-1)

        def design_grad(exps, xs):
            """∂(monomials)/∂q_j, (samples, dofs, terms)."""
            e = np.asarray(exps)
            out = []
            for j in range(n_dofs):
                ej = e.copy()
                ej[:, j] = np.maximum(e[:, j] - 1, 0)
                out.append(e[None, :, j] * np.prod(xs[:, None, :] ** ej[None], axis=-1) / scale[j])
            return np.stack(out, axis=1)

        # Samples where the sampled path jumps (e.g. an OpenSim wrapping surface switching
        # solution) would drag a global polynomial far off everywhere; they are found by a
        # first fit (residual > 10 robust standard deviations and > 1 mm) and left out.
        keep = np.ones(n_samples, bool)
        if robust:
            exps0 = monomial_exponents(n_dofs, min(max_degree, 6))
            coef0, *_ = np.linalg.lstsq(design(exps0, x), y, rcond=None)
            res = np.abs(design(exps0, x) @ coef0 - y)
            mad = 1.4826 * np.median(res, axis=0)
            keep = np.all((res <= 10 * mad) | (res <= 1e-3), axis=1)
        train, test = train[keep[train]], test[keep[test]]

        def solve(exps, rows):
            """Per-muscle coefficients (terms, muscles) from the samples `rows`."""
            a = design(exps, x[rows])
            if moment_arms is None:
                return np.linalg.lstsq(a, y[rows], rcond=None)[0]
            g = design_grad(exps, x[rows])  # (rows, dofs, terms)
            coef = np.empty((len(exps), n_muscles))
            for m in range(n_muscles):
                ok = np.all(np.isfinite(ma[rows, m]), axis=1)
                big = np.concatenate([a, g[ok].reshape(-1, len(exps))])
                rhs = np.concatenate([y[rows, m], -ma[rows, m][ok].reshape(-1)])
                coef[:, m] = np.linalg.lstsq(big, rhs, rcond=None)[0]
            return coef

        def errors(exps, coef, rows):
            err = design(exps, x[rows]) @ coef - y[rows]
            stats = [np.sqrt(np.mean(err**2, axis=0)), np.abs(err).max(axis=0)]
            if moment_arms is not None:
                r = -np.einsum("sjt,tm->smj", design_grad(exps, x[rows]), coef)
                e = np.where(np.isfinite(ma[rows]), r - ma[rows], np.nan)
                stats += [np.sqrt(np.nanmean(e**2, axis=(0, 2))), np.nanmax(np.abs(e), axis=(0, 2))]
            return stats

        # Each muscle gets the degree with its smallest held-out error (length RMS plus
        # moment-arm RMS); graded monomial order makes every lower degree's terms a prefix of
        # the highest one's, so lower-degree muscles just have trailing zero coefficients.
        n_stats = 4 if moment_arms is not None else 2
        best_score = np.full(n_muscles, np.inf)
        best_degree = np.ones(n_muscles, int)
        best_stats = np.zeros((n_stats, n_muscles))
        for degree in range(1, max_degree + 1):
            exps = monomial_exponents(n_dofs, degree)
            if len(exps) > len(train):
                break
            stats = np.stack(errors(exps, solve(exps, train), test))
            score = stats[0] + (stats[2] if moment_arms is not None else 0.0)
            better = score < best_score * (1 - 1e-3)
            best_score = np.where(better, score, best_score)
            best_degree = np.where(better, degree, best_degree)
            best_stats[:, better] = stats[:, better]
        stats = best_stats
        exps = monomial_exponents(n_dofs, int(best_degree.max()))
        coef = np.zeros((len(exps), n_muscles))
        for degree in np.unique(best_degree):
            sel = best_degree == degree
            sub = monomial_exponents(n_dofs, int(degree))
            coef[: len(sub), sel] = solve(sub, np.flatnonzero(keep))[:, sel]
        dtype = jnp.result_type(float)
        as_tuple = lambda v: tuple(float(u) for u in v)  # noqa: E731
        return cls(coefficients=jnp.asarray(coef.T, dtype), centre=jnp.asarray(centre, dtype),
                   scale=jnp.asarray(scale, dtype), exponents=exps,
                   fit_rms=as_tuple(stats[0]), fit_max=as_tuple(stats[1]),
                   fit_outliers=int((~keep).sum()),
                   fit_moment_arm_rms=as_tuple(stats[2]) if moment_arms is not None else (),
                   fit_moment_arm_max=as_tuple(stats[3]) if moment_arms is not None else (),
                   domain=tuple((float(a), float(b)) for a, b in zip(lo, hi)))

    def in_raw_coordinates(self) -> "PolynomialPath":
        """The same polynomial in the raw coordinates q (centre 0, scale 1), with every
        monomial of total degree ≤ `degree` in lexicographic exponent order — the order of
        OpenSim's `MultivariatePolynomialFunction` coefficients (see
        `jaxmsk.io.write_osim_polynomial_paths`). Lengths agree to rounding; the raw form
        is worse conditioned, so keep the normalised one for computing."""
        n, deg = self.n_dofs, self.degree
        exps = sorted(e for e in itertools.product(range(deg + 1), repeat=n) if sum(e) <= deg)
        index = {e: i for i, e in enumerate(exps)}
        centre, scale = np.asarray(self.centre, np.float64), np.asarray(self.scale, np.float64)
        coef = np.asarray(self.coefficients, np.float64)
        out = np.zeros((coef.shape[0], len(exps)))
        for k, e in enumerate(self.exponents):
            # Π_j ((q_j − c_j)/s_j)^{e_j}, each factor expanded by the binomial theorem.
            factors = [[(i, math.comb(ej, i) * (-centre[j]) ** (ej - i) / scale[j] ** ej)
                        for i in range(ej + 1)] for j, ej in enumerate(e)]
            for combo in itertools.product(*factors):
                powers = tuple(i for i, _ in combo)
                out[:, index[powers]] += coef[:, k] * math.prod(w for _, w in combo)
        dtype = self.coefficients.dtype
        return PolynomialPath(coefficients=jnp.asarray(out, dtype), centre=jnp.zeros(n, dtype),
                              scale=jnp.ones(n, dtype), exponents=tuple(exps),
                              fit_rms=self.fit_rms, fit_max=self.fit_max,
                              fit_outliers=self.fit_outliers,
                              fit_moment_arm_rms=self.fit_moment_arm_rms,
                              fit_moment_arm_max=self.fit_moment_arm_max, domain=self.domain,
                              extrapolation=self.extrapolation)

    @property
    def degree(self) -> int:
        """Total degree of the polynomial."""
        return max(sum(e) for e in self.exponents)

    def to_dict(self) -> dict:
        """Plain-Python form for storing as JSON (see `from_dict`)."""
        return dict(coefficients=np.asarray(self.coefficients).tolist(),
                    centre=np.asarray(self.centre).tolist(), scale=np.asarray(self.scale).tolist(),
                    exponents=[list(e) for e in self.exponents], fit_rms=list(self.fit_rms),
                    fit_max=list(self.fit_max), fit_outliers=self.fit_outliers,
                    fit_moment_arm_rms=list(self.fit_moment_arm_rms),
                    fit_moment_arm_max=list(self.fit_moment_arm_max),
                    domain=[list(b) for b in self.domain], extrapolation=self.extrapolation)

    @classmethod
    def from_dict(cls, d: dict) -> "PolynomialPath":
        dtype = jnp.result_type(float)
        return cls(coefficients=jnp.asarray(d["coefficients"], dtype),
                   centre=jnp.asarray(d["centre"], dtype), scale=jnp.asarray(d["scale"], dtype),
                   exponents=tuple(tuple(int(v) for v in e) for e in d["exponents"]),
                   fit_rms=tuple(d.get("fit_rms", ())), fit_max=tuple(d.get("fit_max", ())),
                   fit_outliers=int(d.get("fit_outliers", 0)),
                   fit_moment_arm_rms=tuple(d.get("fit_moment_arm_rms", ())),
                   fit_moment_arm_max=tuple(d.get("fit_moment_arm_max", ())),
                   domain=stored_domain(d), extrapolation=d.get("extrapolation", "linear"))


def stored_domain(d: dict) -> tuple[tuple[float, float], ...]:
    """The domain of a stored path. Files written before paths recorded it hold fitted
    paths whose normalisation is their fitting box (`fit` sets centre ± scale to the box's
    ends), so that box is their domain; a path never fitted has none."""
    if "domain" in d:
        return tuple(tuple(float(v) for v in b) for b in d["domain"])
    if not d.get("fit_rms"):
        return ()
    return tuple((float(c - s), float(c + s)) for c, s in zip(d["centre"], d["scale"]))


__all__ = ["PolynomialPath", "monomial_exponents"]
