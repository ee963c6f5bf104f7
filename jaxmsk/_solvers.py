"""`StabilizedRK3`: an explicit Runge–Kutta method with a long real stability interval, for
muscle models whose stiffness is real and moderate.

Why: a compliant-tendon model's stiffness sits in its normalised tendon forces. On arm26
the Jacobian's large eigenvalues are the diagonal entries ∂ḟT_i/∂f̃T_i, between −190 and
−1050 1/s, all real, while every other eigenvalue is at most 52 1/s in magnitude (checked at
four instants of a 1 s simulation). An explicit solver's step is then limited by
stability on the negative real axis, not by accuracy: Bosh3 (3 evaluations per step, real
stability interval 2.51) takes 400–500 steps per simulated second whatever the tolerance.
Implicit solvers pay for a Jacobian and Newton iterations on every stage, and a
Rosenbrock-W method with only the tendon-force diagonal as its W matrix (tried: ROS34PW2)
took as many steps as Bosh3, at a larger error.

Stabilized (Runge–Kutta–Chebyshev-type) methods spend extra stages on a longer stability
interval along the negative real axis. This one has 5 stages and order 3, with the
stability polynomial

    R(z) = 1 + z + z²/2 + z³/6 + 0.0242 z⁴ + 0.00117 z⁵,

whose two free coefficients were chosen to maximise the real interval on which |R| ≤ 1
while keeping |R| ≤ 0.9 beyond z = −2 (damping, for robustness near the boundary): it is
stable on [−10.08, 0], 2.0 per evaluation against Bosh3's 0.84. The Butcher coefficients
solve the four order-3 conditions and the two stability-polynomial conditions while
minimising the order-4 error coefficients (all entries came out positive, nodes in
[0, 0.85]); the embedded solution (order 2, stable on [−14.1, 0]) is b̂ = b + δ with δ
orthogonal to 1 and c. The coefficients were derived for jaxmsk by
`experiments/solver_design/design.py`, and `tests/test_stabilized.py` checks every
condition, the stability intervals and the observed order of convergence.

On arm26 (batch 1024, 2-core CPU, float64, 101 output times over 1 s, one XLA device): at
rtol 1e-3 it took at most 185 steps and 0.76 ms per trajectory, 2.5e-5 rad from a converged
solution; Bosh3 at rtol 1e-3 with a PI controller took 485 steps and 1.08 ms, 1.7e-5 rad
off (a side-by-side run; `benchmarks/simulate.py --solver stabilized` has the full table).

Dense output between steps is linear: `simulate` clips its steps to the output times,
where the output is then the solver's own solution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import numpy as np

_A_LOWER = (
    np.array([0.19423315166454697]),
    np.array([0.27999968798671476, 0.3065729664031199]),
    np.array([0.11650364431807768, 0.09389700495150158, 0.20128358826256032]),
    np.array([0.05430992365720322, 0.139345864351475, 0.3751614693169229,
              0.27771070679127735]),
)
_B = np.array([0.06065948914532641, 0.2497300809615337, 0.08430521495898093,
               0.2538033296291151, 0.3515018853050437])
_B_EMBEDDED = np.array([0.02530751933821218, 0.08767569343300913, 0.44547827950614666,
                        0.34980290128391095, 0.09173560643872103])
_C = np.array([row.sum() for row in _A_LOWER])

# The target stability polynomial's z⁴ and z⁵ coefficients.
STABILITY_COEFFICIENTS = (0.0242, 0.00117)


def _linear(*, t0, t1, y0, y1, k):
    del k
    return diffrax.LocalLinearInterpolation(t0=t0, t1=t1, y0=y0, y1=y1)


class StabilizedRK3(diffrax.AbstractERK):
    """Explicit Runge–Kutta, 5 stages, order 3 (embedded order 2), real stability interval
    [−10.08, 0] (Bosh3: [−2.51, 0]; Tsit5: about [−3.5, 0]).

    For ODEs whose step size an explicit solver would otherwise have to limit for stability
    of real, moderately stiff modes, like the tendon-force dynamics of compliant-tendon
    muscles. Not for oscillatory stiffness (eigenvalues far from the real axis) or very
    stiff problems: use an implicit solver there. `simulate(solver="stabilized")`.
    Dense output between steps is linear.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        a_lower=_A_LOWER, b_sol=_B, b_error=_B - _B_EMBEDDED, c=_C)
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = (
        staticmethod(_linear))

    def order(self, terms):
        return 3


__all__ = ["StabilizedRK3", "STABILITY_COEFFICIENTS"]
