"""Kinematic trees whose joints move as functions of the coordinates (OpenSim's CustomJoint).

A `JointTree` is the skeleton of a model as OpenSim describes it: bodies in a tree rooted at
ground, each joined to its parent by a joint whose three rotations and three translations are
functions of the generalised coordinates (`JointFunction`: constants, lines, polynomials,
splines). That covers OpenSim's `PinJoint`, `SliderJoint`, `PlanarJoint`, `WeldJoint` and the
`CustomJoint`s of gait models: three-axis hips, knees whose translations follow the knee
angle, and the patella, whose coordinate a `CoordinateCouplerConstraint` ties to the knee
angle. Such a dependent coordinate is eliminated: it is a `JointFunction` of an independent
coordinate (`couplings`), as in OpenSim's own reduced model.

Only the forward kinematics is written here; the dynamics comes from the Lagrangian by
autodiff as in `SerialChain`: T from body velocities (`jax.jvp` of the poses), M = ∂²T/∂q̇²,
and the bias from Lagrange's equations. Constraint forces of the eliminated couplings do no
work, so this is the exact reduced dynamics.

Frames (lengths in m, angles in rad): body b hangs from body `parents[b]` (−1 = ground) by
joint b. `parent_rotation[b]`, `parent_offset[b]` place the joint's frame F in the parent body
(in ground for a root); `child_rotation[b]`, `child_offset[b]` place its frame M in body b (a
vector with components v in the frame has components R·v in the body). The pose of M in F is
R_FM = R(a₀, θ₀)·R(a₁, θ₁)·R(a₂, θ₂) (body-fixed sequence; aₖ = `axes[b, k]`) and
p_FM = Σₖ θ₃₊ₖ·a₃₊ₖ (expressed in F), with θₖ = `functions[b][k]` of the joint coordinate
`inputs[b][k]` (an index into u = (q, couplings(q)); −1 for a constant).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_float_array, check_finite, check_nonnegative, is_concrete
from ._base import AbstractSkeleton
from ._chain import (
    STANDARD_GRAVITY,
    axis_rotation,
    body_kinetic_energy,
    body_potential_energy,
    lagrangian_bias,
    lagrangian_mass_matrix,
    unrolled_cholesky_solve,
)


class JointFunction(eqx.Module):
    """A function of one variable, θ = f(x): a piecewise polynomial.

    Piece i covers [breaks[i], breaks[i+1]] and is Σₖ coefficients[i, k]·(x − breaks[i])ᵏ.
    Beyond the first and last break the function continues as the straight line tangent at
    that break (`linear_ends=True`, OpenSim's splines) or as the end piece's polynomial
    (`linear_ends=False`, e.g. one piece holding a polynomial of x with breaks[0] = 0).

    Build with `constant`, `linear`, `polynomial`, or directly from break points and
    per-piece coefficients (ascending powers of the local offset).
    """

    breaks: Float[Array, " breaks"] = eqx.field(converter=as_float_array)
    coefficients: Float[Array, "pieces terms"] = eqx.field(converter=as_float_array)
    linear_ends: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        b, c = self.breaks, self.coefficients
        if b.ndim != 1 or c.ndim != 2 or c.shape[0] != b.shape[0] - 1 or c.shape[0] < 1:
            raise ValueError(f"JointFunction: breaks {b.shape} and coefficients {c.shape} must be "
                             "(p + 1,) and (p, degree + 1) for p >= 1 pieces.")
        if is_concrete(b) and not (np.diff(np.asarray(b)) > 0).all():
            raise ValueError("JointFunction: breaks must increase strictly.")

    @classmethod
    def constant(cls, value: float) -> "JointFunction":
        return cls(jnp.asarray([0.0, 1.0]), jnp.asarray([[float(value)]]))

    @classmethod
    def linear(cls, slope: float, intercept: float = 0.0) -> "JointFunction":
        return cls(jnp.asarray([0.0, 1.0]), jnp.asarray([[float(intercept), float(slope)]]))

    @classmethod
    def polynomial(cls, coefficients) -> "JointFunction":
        """Σₖ cₖ·xᵏ, coefficients in ascending powers."""
        c = np.asarray(coefficients, np.float64).reshape(1, -1)
        return cls(jnp.asarray([0.0, 1.0]), jnp.asarray(c))

    @property
    def is_constant(self) -> bool:
        c = self.coefficients
        return is_concrete(c) and c.shape[0] == 1 and not np.asarray(c[0, 1:]).any()

    def __call__(self, x: ArrayLike) -> Array:
        b, c = self.breaks, self.coefficients
        x = jnp.asarray(x, jnp.result_type(x, b))
        i = jnp.clip(jnp.searchsorted(b, x, side="right") - 1, 0, c.shape[0] - 1)
        y = _horner(c[i], x - b[i])
        if not self.linear_ends:
            return y
        d = c.shape[1] - 1
        left_y, left_s = c[0, 0], (c[0, 1] if d >= 1 else jnp.zeros_like(c[0, 0]))
        h = b[-1] - b[-2]
        right_y = _horner(c[-1], h)
        right_s = _horner(c[-1, 1:] * jnp.arange(1, d + 1), h) if d >= 1 else jnp.zeros_like(h)
        y = jnp.where(x < b[0], left_y + left_s * (x - b[0]), y)
        return jnp.where(x > b[-1], right_y + right_s * (x - b[-1]), y)


def _horner(coefficients: Array, dx: Array) -> Array:
    y = jnp.zeros_like(dx) + coefficients[..., -1]
    for k in range(coefficients.shape[-1] - 2, -1, -1):
        y = y * dx + coefficients[..., k]
    return y


def _field(name: str, value, shape: tuple[int, ...]) -> Array:
    x = as_float_array(value)
    if x.shape != shape:
        raise ValueError(f"JointTree.{name} has shape {x.shape}, expected {shape} (one entry per "
                         "body, in the order of `parents`).")
    return check_finite(f"JointTree.{name}", x)


class JointTree(AbstractSkeleton):
    """A tree of rigid bodies moved by function-based joints (see the module docstring).

    Equation of motion M(q)·q̈ + bias(q, q̇) = τ over the n independent coordinates q (rad for
    rotations, m for translations), τ in N·m / N.

    Args (keyword only; B = number of bodies):
        parents: (B,) ints, the parent of each body (−1 = ground), each before its children.
        parent_offset, parent_rotation: (B, 3), (B, 3, 3) joint frame F in the parent body.
        child_offset, child_rotation: (B, 3), (B, 3, 3) joint frame M in the body.
        axes: (B, 6, 3) unit axes in F: three rotations, then three translations.
        functions: B tuples of six `JointFunction`s (rad, rad, rad, m, m, m).
        inputs: B tuples of six ints: the coordinate each function reads, an index into
            u = (q, couplings(q)), or −1 for a constant function (evaluated at 0).
        n_coordinates: n, the number of independent coordinates.
        couplings: `JointFunction`s giving dependent coordinates from independent ones
            (u[n + k] = couplings[k](q[coupling_inputs[k]])), e.g. the patella's.
        coupling_inputs: the independent coordinate each coupling reads.
        mass (B,) kg, com (B, 3) m in the body frame, inertia (B, 3, 3) kg·m² about the COM
            in the body frame; gravity (3,) m/s² in ground.

    Methods take one sample (q, q̇, τ of shape (n,)); batch with `jax.vmap`. All of them
    work under `jit`, `vmap` and `grad`.
    """

    parents: tuple[int, ...] = eqx.field(static=True)
    parent_offset: Float[Array, "bodies 3"]
    parent_rotation: Float[Array, "bodies 3 3"]
    child_offset: Float[Array, "bodies 3"]
    child_rotation: Float[Array, "bodies 3 3"]
    axes: Float[Array, "bodies 6 3"]
    functions: tuple[tuple[JointFunction, ...], ...]
    inputs: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    n_coordinates: int = eqx.field(static=True)
    couplings: tuple[JointFunction, ...]
    coupling_inputs: tuple[int, ...] = eqx.field(static=True)
    mass: Float[Array, " bodies"]
    com: Float[Array, "bodies 3"]
    inertia: Float[Array, "bodies 3 3"]
    gravity: Float[Array, "3"]

    def __init__(self, *, parents, parent_offset, parent_rotation, child_offset, child_rotation,
                 axes, functions, inputs, n_coordinates, mass, com, inertia,
                 couplings=(), coupling_inputs=(), gravity=STANDARD_GRAVITY):
        self.parents = tuple(int(p) for p in parents)
        nb = len(self.parents)
        if nb < 1:
            raise ValueError("JointTree needs at least one body.")
        bad = [b for b, p in enumerate(self.parents) if not -1 <= p < b]
        if bad:
            raise ValueError(f"JointTree.parents: bodies {bad} name a parent that is not an "
                             "earlier body or ground (−1); list parents before children.")
        self.n_coordinates = int(n_coordinates)
        if self.n_coordinates < 1:
            raise ValueError("JointTree.n_coordinates must be >= 1.")
        self.couplings = tuple(couplings)
        self.coupling_inputs = tuple(int(i) for i in coupling_inputs)
        if len(self.couplings) != len(self.coupling_inputs) or not all(
                0 <= i < self.n_coordinates for i in self.coupling_inputs):
            raise ValueError("JointTree: each coupling needs one input, an independent "
                             f"coordinate index in [0, {self.n_coordinates}).")
        self.functions = tuple(tuple(f) for f in functions)
        self.inputs = tuple(tuple(int(i) for i in row) for row in inputs)
        n_u = self.n_coordinates + len(self.couplings)
        if (len(self.functions) != nb or len(self.inputs) != nb
                or any(len(f) != 6 for f in self.functions)
                or any(len(r) != 6 or not all(-1 <= i < n_u for i in r) for r in self.inputs)):
            raise ValueError(f"JointTree: functions and inputs need six entries per body ({nb} "
                             f"bodies), inputs in [-1, {n_u}).")
        used = {i for row in self.inputs for i in row} | set(self.coupling_inputs)
        unused = sorted(set(range(self.n_coordinates)) - used)
        if unused:
            raise ValueError(f"JointTree: coordinates {unused} move no joint; the mass matrix "
                             "would be singular.")
        self.parent_offset = _field("parent_offset", parent_offset, (nb, 3))
        self.parent_rotation = _field("parent_rotation", parent_rotation, (nb, 3, 3))
        self.child_offset = _field("child_offset", child_offset, (nb, 3))
        self.child_rotation = _field("child_rotation", child_rotation, (nb, 3, 3))
        axes = _field("axes", axes, (nb, 6, 3))
        norm = jnp.linalg.norm(axes, axis=-1, keepdims=True)
        self.axes = axes / jnp.where(norm > 0, norm, 1.0)
        self.mass = check_nonnegative("JointTree.mass", _field("mass", mass, (nb,)))
        self.com = _field("com", com, (nb, 3))
        self.inertia = _field("inertia", inertia, (nb, 3, 3))
        self.gravity = _field("gravity", gravity, (3,))

    @property
    def n_dofs(self) -> int:
        return self.n_coordinates

    def _check_q(self, name: str, x: ArrayLike) -> Array:
        x = as_float_array(x)
        if x.shape != (self.n_dofs,):
            raise ValueError(f"{name} has shape {x.shape}, expected ({self.n_dofs},). Pass one "
                             "sample; batch with jax.vmap.")
        return x

    # -- kinematics -------------------------------------------------------------------
    def joint_coordinates(self, q: ArrayLike) -> Float[Array, " coordinates"]:
        """u = (q, dependent coordinates): every coordinate a joint reads."""
        q = jnp.asarray(q)
        if not self.couplings:
            return q
        deps = [f(q[i]) for f, i in zip(self.couplings, self.coupling_inputs)]
        return jnp.concatenate([q, jnp.stack(deps).astype(q.dtype)])

    def _transforms(self, q: Array) -> tuple[Array, Array]:
        dtype = jnp.result_type(q, self.axes)
        u = self.joint_coordinates(q.astype(dtype))
        zero = jnp.zeros((), dtype)
        rotations, origins = [], []
        for b, parent in enumerate(self.parents):
            theta = [f(u[i] if i >= 0 else zero) for f, i in zip(self.functions[b],
                                                                   self.inputs[b])]
            a = self.axes[b]
            r_fm = (axis_rotation(a[0], theta[0]) @ axis_rotation(a[1], theta[1])
                    @ axis_rotation(a[2], theta[2]))
            p_fm = theta[3] * a[3] + theta[4] * a[4] + theta[5] * a[5]
            if parent < 0:
                r0, p0 = jnp.eye(3, dtype=dtype), jnp.zeros(3, dtype)
            else:
                r0, p0 = rotations[parent], origins[parent]
            r_f = r0 @ self.parent_rotation[b]
            p_f = p0 + r0 @ self.parent_offset[b]
            r_body = r_f @ r_fm @ self.child_rotation[b].T
            origins.append(p_f + r_f @ p_fm - r_body @ self.child_offset[b])
            rotations.append(r_body)
        return jnp.stack(rotations), jnp.stack(origins)

    def body_transforms(self, q: ArrayLike) -> tuple[Float[Array, "bodies 3 3"],
                                                    Float[Array, "bodies 3"]]:
        """Pose of every body in ground: (rotations (B, 3, 3) ground-from-body, origins
        (B, 3) m)."""
        return _compiled(self, "_transforms", self._check_q("q", q))

    def _com_positions(self, q: Array) -> tuple[Array, Array]:
        rotations, origins = self._transforms(q)
        return rotations, origins + jnp.einsum("nij,nj->ni", rotations, self.com)

    # -- energies and dynamics ----------------------------------------------------------
    def _kinetic(self, q: Array, qdot: Array) -> Array:
        return body_kinetic_energy(self._com_positions, self.mass, self.inertia, q, qdot)

    def _potential(self, q: Array) -> Array:
        return body_potential_energy(self._com_positions, self.mass, self.gravity, q)

    def _mass_matrix(self, q: Array) -> Array:
        return lagrangian_mass_matrix(self._kinetic, q)

    def _bias(self, q: Array, qdot: Array) -> Array:
        return lagrangian_bias(self._kinetic, self._potential, q, qdot)

    def _acceleration(self, q: Array, qdot: Array, tau: Array) -> Array:
        rhs = tau - self._bias(q, qdot)
        mass = self._mass_matrix(q)
        if self.n_dofs <= 6:
            return unrolled_cholesky_solve(mass, rhs)
        return jsl.cho_solve(jsl.cho_factor(mass), rhs)

    def kinetic_energy(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, ""]:
        """T (J) from the body velocities, by `jax.jvp` of the kinematics."""
        return _compiled(self, "_kinetic", self._check_q("q", q), self._check_q("qdot", qdot))

    def potential_energy(self, q: ArrayLike) -> Float[Array, ""]:
        """Gravitational potential V = −Σᵢ mᵢ·g·cᵢ (J)."""
        return _compiled(self, "_potential", self._check_q("q", q))

    def mass_matrix(self, q: ArrayLike) -> Float[Array, "dofs dofs"]:
        """M(q) = ∂²T/∂q̇² (kg·m², or kg for translations)."""
        return _compiled(self, "_mass_matrix", self._check_q("q", q))

    def bias_forces(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        """C(q, q̇)·q̇ + G(q) from Lagrange's equations with L = T − V (autodiff)."""
        return _compiled(self, "_bias", self._check_q("q", q), self._check_q("qdot", qdot))

    def acceleration(self, q: ArrayLike, qdot: ArrayLike, tau: ArrayLike) -> Float[Array, " dofs"]:
        """q̈ solving M(q)·q̈ = τ − bias(q, q̇) by Cholesky."""
        return _compiled(self, "_acceleration", self._check_q("q", q),
                         self._check_q("qdot", qdot), self._check_q("tau", tau))


@eqx.filter_jit
def _compiled(tree: JointTree, method: str, *args):
    return getattr(tree, method)(*args)
