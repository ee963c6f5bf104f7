"""Serial chains of revolute joints; equations of motion from the Lagrangian by autodiff.

Only the forward kinematics is written by hand. The kinetic energy is assembled from body
velocities that `jax.jvp` differentiates out of the kinematics; the mass matrix is its
Hessian in q̇, and the Coriolis/centrifugal and gravity terms come from differentiating the
Lagrangian L = T − V, so there is no hand-derived dynamics formula to get wrong.

Frame conventions (all lengths in m, rotations are proper 3×3 matrices):

- Joint i connects body i − 1 (body −1 is ground) to body i.
- `parent_offset[i]`, `parent_rotation[i]`: origin and orientation of joint i's parent
  frame Pᵢ, expressed in body i − 1 (in ground for i = 0); a vector with components v in
  Pᵢ has components `parent_rotation[i] @ v` in body i − 1.
- `child_offset[i]`, `child_rotation[i]`: origin and orientation of joint i's child frame
  Cᵢ expressed in body i (the same convention: body-from-frame).
- `axis[i]`: unit rotation axis, with the same components in Pᵢ and Cᵢ. At q_i = 0 the
  frames coincide; at q_i the rotation of Cᵢ relative to Pᵢ is a right-handed rotation
  by q_i (rad) about the axis.
- Body i's mass properties live in its own frame: `com[i]` (m), `inertia[i]` about the
  centre of mass (kg·m²), `mass[i]` (kg).

This is OpenSim's convention for a `PinJoint` (axis = z of the joint frames) and, with the
axis rotated into the parent frame, for a one-coordinate `CustomJoint`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_float_array, check_finite, check_nonnegative, is_concrete
from ._base import AbstractSkeleton

STANDARD_GRAVITY = (0.0, -9.80665, 0.0)  # m/s², OpenSim's default (y up)
_ROTATION_TOL = 1e-6  # |RᵀR − I| and |det R − 1| allowed in rotation fields
_INERTIA_TOL = 1e-9  # relative tolerance of the symmetry and PSD checks


def axis_rotation(axis: Array, angle: Array) -> Array:
    """Right-handed rotation by `angle` (rad) about the unit vector `axis` (Rodrigues)."""
    k = skew(axis)
    return jnp.eye(3, dtype=k.dtype) + jnp.sin(angle) * k + (1.0 - jnp.cos(angle)) * (k @ k)


def skew(v: Array) -> Array:
    """The cross-product matrix [v]ₓ, with [v]ₓ·w = v × w."""
    z = jnp.zeros_like(v[0])
    return jnp.stack([jnp.stack([z, -v[2], v[1]]),
                      jnp.stack([v[2], z, -v[0]]),
                      jnp.stack([-v[1], v[0], z])])


def vee(s: Array) -> Array:
    """Inverse of `skew` (antisymmetric part of s)."""
    return 0.5 * jnp.stack([s[2, 1] - s[1, 2], s[0, 2] - s[2, 0], s[1, 0] - s[0, 1]])


def _field(owner: str, name: str, value, shape: tuple[int, ...]) -> Array:
    x = as_float_array(value)
    if x.shape != shape:
        raise ValueError(
            f"{owner}.{name} has shape {x.shape}, expected {shape} (a leading joint axis of "
            f"length {shape[0]}). Stack per-joint values along the first axis; batch chains "
            "with jax.vmap, not extra axes."
        )
    return check_finite(f"{owner}.{name}", x)


def _check_rotations(owner: str, name: str, r: Array) -> None:
    if not is_concrete(r):
        return
    r = np.asarray(r, dtype=np.float64)
    ortho = np.abs(np.einsum("nji,njk->nik", r, r) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(r)
    bad = (ortho > _ROTATION_TOL) | (np.abs(det - 1.0) > _ROTATION_TOL)
    if bad.any():
        raise ValueError(
            f"{owner}.{name}[{np.flatnonzero(bad).tolist()}] is not a proper rotation matrix "
            "(RᵀR = I, det R = +1). Build rotations with e.g. scipy.spatial.transform."
        )


def _check_inertia(owner: str, inertia: Array) -> None:
    if not is_concrete(inertia):
        return
    i = np.asarray(inertia, dtype=np.float64)
    scale = np.maximum(np.abs(i).max(axis=(1, 2)), 1e-300)
    asym = np.abs(i - np.swapaxes(i, 1, 2)).max(axis=(1, 2)) > _INERTIA_TOL * scale
    if asym.any():
        raise ValueError(f"{owner}.inertia[{np.flatnonzero(asym).tolist()}] is not symmetric.")
    moments = np.linalg.eigvalsh(0.5 * (i + np.swapaxes(i, 1, 2)))  # ascending
    bad = moments[:, 0] < -_INERTIA_TOL * scale
    if bad.any():
        raise ValueError(
            f"{owner}.inertia[{np.flatnonzero(bad).tolist()}] is not positive semi-definite: "
            f"principal moments {moments[bad].tolist()}. Give the inertia about the centre of "
            "mass in the body frame, in kg·m²."
        )


def body_kinetic_energy(com_positions, mass, inertia, q, qdot, armature=None) -> Array:
    """T = Σᵢ ½·mᵢ·|v_cᵢ|² + ½·ωᵢᵀ·Iᵢ·ωᵢ (+ ½·Σ aⱼ·q̇ⱼ² of rotors), with the body velocities
    from `jax.jvp` of `com_positions(q) -> (rotations (B, 3, 3), COMs (B, 3))`."""
    (rot, _), (rot_dot, com_dot) = jax.jvp(com_positions, (q,), (qdot,))
    omega = jax.vmap(vee)(jnp.einsum("nji,njk->nik", rot, rot_dot))  # body frame
    trans = 0.5 * jnp.sum(mass * jnp.sum(com_dot**2, axis=-1))
    rotors = 0.0 if armature is None else 0.5 * jnp.sum(armature * qdot**2)
    return trans + 0.5 * jnp.einsum("ni,nij,nj->", omega, inertia, omega) + rotors


def body_potential_energy(com_positions, mass, gravity, q) -> Array:
    """V = −Σᵢ mᵢ·g·cᵢ (J)."""
    _, com = com_positions(q)
    return -jnp.sum(mass * (com @ gravity))


def lagrangian_mass_matrix(kinetic, q) -> Array:
    """M(q) = ∂²T/∂q̇², symmetrised."""
    m = jax.jacfwd(jax.grad(kinetic, argnums=1), argnums=1)(q, jnp.zeros_like(q))
    return 0.5 * (m + m.T)


def lagrangian_bias(kinetic, potential, q, qdot) -> Array:
    """(∂/∂q ∂T/∂q̇)·q̇ − ∂T/∂q + ∂V/∂q, Lagrange's equations less M·q̈."""
    momentum = jax.grad(kinetic, argnums=1)
    _, momentum_rate = jax.jvp(lambda x: momentum(x, qdot), (q,), (qdot,))
    dt_dq = jax.grad(kinetic, argnums=0)(q, qdot)
    return momentum_rate - dt_dq + jax.grad(potential)(q)


class SerialChain(AbstractSkeleton):
    """A serial chain of n single-axis revolute joints (see the module docstring for frames).

    Equation of motion, as every jaxmsk skeleton writes it: M(q)·q̈ + bias(q, q̇) = τ, with
    bias = C(q, q̇)·q̇ + G(q), τ the generalised forces (N·m) and q the joint angles (rad).

    Args (keyword only; n = number of joints; every field is checked on construction):
        parent_offset: (n, 3) m, joint parent-frame origins in the parent body (ground for 0).
        axis: (n, 3) rotation axes in the joint frames; normalised here (a zero axis raises).
        mass: (n,) kg, >= 0.
        com: (n, 3) m, centres of mass in the body frames.
        inertia: (n, 3, 3) kg·m² about the centre of mass, in the body frame: symmetric and
            positive semi-definite. (The triangle inequality of rigid bodies is not
            enforced: published models sometimes violate it slightly, and OpenSim loads them.)
        parent_rotation: (n, 3, 3) parent-frame orientations (default identity).
        child_offset: (n, 3) m, child-frame origins in the child body (default zero).
        child_rotation: (n, 3, 3) child-frame orientations (default identity).
        gravity: (3,) m/s² in ground, default (0, −9.80665, 0).
        armature: (n,) kg·m², rotor inertia added to each joint's own diagonal of the mass
            matrix (MuJoCo's `armature`: T gains ½·Σ aᵢ·q̇ᵢ²); default none (None = 0).

    Massless bodies are allowed, but the mass matrix is then positive definite only if every
    joint still moves some inertia; `acceleration` of a singular chain is not finite.

    All methods take one sample (q, q̇, τ of shape (n,)); batch with `jax.vmap`. They work
    under `jit`, `vmap` and `grad`, including gradients with respect to the fields.
    """

    parent_offset: Float[Array, "dofs 3"]
    parent_rotation: Float[Array, "dofs 3 3"]
    child_offset: Float[Array, "dofs 3"]
    child_rotation: Float[Array, "dofs 3 3"]
    axis: Float[Array, "dofs 3"]
    mass: Float[Array, " dofs"]
    com: Float[Array, "dofs 3"]
    inertia: Float[Array, "dofs 3 3"]
    gravity: Float[Array, "3"]
    armature: Float[Array, " dofs"] | None = None

    def __init__(
        self,
        *,
        parent_offset: ArrayLike,
        axis: ArrayLike,
        mass: ArrayLike,
        com: ArrayLike,
        inertia: ArrayLike,
        parent_rotation: ArrayLike | None = None,
        child_offset: ArrayLike | None = None,
        child_rotation: ArrayLike | None = None,
        gravity: ArrayLike = STANDARD_GRAVITY,
        armature: ArrayLike | None = None,
    ):
        owner = "SerialChain"
        mass = as_float_array(mass)
        if mass.ndim != 1 or mass.shape[0] < 1:
            raise ValueError(
                f"{owner}.mass has shape {mass.shape}; it must be 1-D with one entry per joint "
                "(n >= 1), and fixes the number of joints n."
            )
        n = mass.shape[0]
        eye = np.broadcast_to(np.eye(3), (n, 3, 3))
        zero = np.zeros((n, 3))
        if parent_rotation is None:
            parent_rotation = eye
        if child_rotation is None:
            child_rotation = eye
        if child_offset is None:
            child_offset = zero
        fields = dict(parent_offset=(parent_offset, (n, 3)),
                      parent_rotation=(parent_rotation, (n, 3, 3)),
                      child_offset=(child_offset, (n, 3)),
                      child_rotation=(child_rotation, (n, 3, 3)),
                      axis=(axis, (n, 3)), com=(com, (n, 3)), inertia=(inertia, (n, 3, 3)),
                      gravity=(gravity, (3,)))
        arrays = {k: _field(owner, k, v, s) for k, (v, s) in fields.items()}
        dtype = jnp.result_type(mass, *arrays.values())
        arrays = {k: v.astype(dtype) for k, v in arrays.items()}
        _check_rotations(owner, "parent_rotation", arrays["parent_rotation"])
        _check_rotations(owner, "child_rotation", arrays["child_rotation"])
        _check_inertia(owner, arrays["inertia"])
        axis = arrays["axis"]
        norm = jnp.linalg.norm(axis, axis=-1, keepdims=True)
        if is_concrete(norm) and (np.asarray(norm) < 1e-12).any():
            bad = np.flatnonzero(np.asarray(norm)[:, 0] < 1e-12).tolist()
            raise ValueError(f"{owner}.axis[{bad}] has zero length; give a unit rotation axis.")
        arrays["axis"] = axis / jnp.where(norm > 0, norm, 1.0)
        self.mass = check_nonnegative(f"{owner}.mass", mass.astype(dtype))
        self.parent_offset = arrays["parent_offset"]
        self.parent_rotation = arrays["parent_rotation"]
        self.child_offset = arrays["child_offset"]
        self.child_rotation = arrays["child_rotation"]
        self.axis = arrays["axis"]
        self.com = arrays["com"]
        self.inertia = arrays["inertia"]
        self.gravity = arrays["gravity"]
        self.armature = None if armature is None else check_nonnegative(
            f"{owner}.armature", _field(owner, "armature", armature, (n,)).astype(dtype))

    @property
    def n_dofs(self) -> int:
        """Number of joints (= generalised coordinates)."""
        return self.mass.shape[-1]

    def _check_q(self, name: str, x: ArrayLike) -> Array:
        x = as_float_array(x)
        if x.shape != (self.n_dofs,):
            raise ValueError(
                f"{name} has shape {x.shape}, expected ({self.n_dofs},) for a chain of "
                f"{self.n_dofs} joints. Pass one sample; batch with jax.vmap."
            )
        return x

    # -- kinematics -------------------------------------------------------------------
    # Public methods check shapes, then run the private implementation under `filter_jit`
    # (`_compiled`): eager calls then reuse one compilation instead of re-tracing the scan
    # and the nested derivatives op by op; inside a user's `jit` the inner jit is inlined.
    def _transforms(self, q: Array) -> tuple[Array, Array]:
        def joint(carry, per_joint):
            r_prev, p_prev = carry
            p_off, p_rot, c_off, c_rot, axis, angle = per_joint
            r_joint = r_prev @ p_rot @ axis_rotation(axis, angle)
            r_body = r_joint @ c_rot.T
            p_body = p_prev + r_prev @ p_off - r_body @ c_off
            return (r_body, p_body), (r_body, p_body)

        dtype = jnp.result_type(q, self.axis)
        init = (jnp.eye(3, dtype=dtype), jnp.zeros(3, dtype=dtype))
        per_joint = (self.parent_offset, self.parent_rotation, self.child_offset,
                     self.child_rotation, self.axis, q)
        # Unrolled: chains are short, and a rolled scan inside the Lagrangian's nested
        # derivatives is slow on CPU (arm26's acceleration: 10.6 → 6.8 µs per state).
        _, (rotations, origins) = jax.lax.scan(joint, init, per_joint, unroll=True)
        return rotations, origins

    def body_transforms(
        self, q: ArrayLike
    ) -> tuple[Float[Array, "dofs 3 3"], Float[Array, "dofs 3"]]:
        """Pose of every body in ground at joint angles q (rad).

        Returns:
            rotations: (n, 3, 3), ground-from-body rotation matrices.
            origins: (n, 3), body-frame origins in ground (m).
        """
        return _compiled(self, "_transforms", self._check_q("q", q))

    def _com_positions(self, q: Array) -> tuple[Array, Array]:
        rotations, origins = self._transforms(q)
        return rotations, origins + jnp.einsum("nij,nj->ni", rotations, self.com)

    # -- energies ---------------------------------------------------------------------
    def _kinetic(self, q: Array, qdot: Array) -> Array:
        return body_kinetic_energy(self._com_positions, self.mass, self.inertia, q, qdot,
                                   self.armature)

    def _potential(self, q: Array) -> Array:
        return body_potential_energy(self._com_positions, self.mass, self.gravity, q)

    def kinetic_energy(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, ""]:
        """T = Σᵢ ½·mᵢ·|v_cᵢ|² + ½·ωᵢᵀ·Iᵢ·ωᵢ (J), body velocities by `jax.jvp` of the kinematics."""
        return _compiled(self, "_kinetic", self._check_q("q", q), self._check_q("qdot", qdot))

    def potential_energy(self, q: ArrayLike) -> Float[Array, ""]:
        """Gravitational potential V = −Σᵢ mᵢ·g·cᵢ (J), zero with every COM at the ground origin."""
        return _compiled(self, "_potential", self._check_q("q", q))

    # -- equation of motion -----------------------------------------------------------
    def _mass_matrix(self, q: Array) -> Array:
        return lagrangian_mass_matrix(self._kinetic, q)

    def _bias(self, q: Array, qdot: Array) -> Array:
        return lagrangian_bias(self._kinetic, self._potential, q, qdot)

    def _recursive_terms(self, q: Array, qdot: Array) -> tuple[Array, Array]:
        """(M(q), bias(q, q̇)) by first-order rigid-body recursions, the fast equivalent of
        the Lagrangian's second derivatives (equal to rounding; tested):

        M = Σ_b m_b·J_vbᵀJ_vb + J_ωbᵀ·I_b·J_ωb with J_ωb[:, j] = a_j and
        J_vb[:, j] = a_j × (c_b − o_j) for joints j ≤ b (world joint axes a_j through the
        joint origins o_j, body COMs c_b, inertias I_b about the COM in world axes); the bias
        is recursive Newton–Euler inverse dynamics at q̈ = 0 with the base accelerating at −g.
        """
        n = self.n_dofs
        dtype = jnp.result_type(q, self.axis)
        r_prev, p_prev = jnp.eye(3, dtype=dtype), jnp.zeros(3, dtype=dtype)
        axes, origins, coms, inertias = [], [], [], []
        for b in range(n):
            joint_frame = r_prev @ self.parent_rotation[b]
            origin = p_prev + r_prev @ self.parent_offset[b]
            rot = joint_frame @ axis_rotation(self.axis[b], q[b]) @ self.child_rotation[b].T
            p_prev = origin - rot @ self.child_offset[b]
            r_prev = rot
            axes.append(joint_frame @ self.axis[b])
            origins.append(origin)
            coms.append(p_prev + rot @ self.com[b])
            inertias.append(rot @ self.inertia[b] @ rot.T)
        # Mass matrix from the body Jacobians.
        rows = [[jnp.zeros((), dtype) for _ in range(n)] for _ in range(n)]
        for b in range(n):
            lin = [jnp.cross(axes[j], coms[b] - origins[j]) for j in range(b + 1)]
            ang = [inertias[b] @ axes[j] for j in range(b + 1)]
            for i in range(b + 1):
                for j in range(i + 1):
                    rows[i][j] = rows[i][j] + self.mass[b] * (lin[i] @ lin[j]) + axes[i] @ ang[j]
        mass = jnp.stack([jnp.stack([rows[max(i, j)][min(i, j)] for j in range(n)])
                          for i in range(n)])
        if self.armature is not None:
            mass = mass + jnp.diag(self.armature.astype(dtype))
        # Recursive Newton–Euler at q̈ = 0: forward velocities and accelerations...
        omega = jnp.zeros(3, dtype)
        alpha = jnp.zeros(3, dtype)
        acc_origin_prev, origin_prev = -self.gravity.astype(dtype), jnp.zeros(3, dtype)
        omega_prev, alpha_prev = omega, alpha
        acc_com, alphas, omegas = [], [], []
        for b in range(n):
            d = origins[b] - origin_prev
            acc_origin = (acc_origin_prev + jnp.cross(alpha_prev, d)
                          + jnp.cross(omega_prev, jnp.cross(omega_prev, d)))
            spin = axes[b] * qdot[b]
            omega = omega_prev + spin
            alpha = alpha_prev + jnp.cross(omega_prev, spin)
            r = coms[b] - origins[b]
            acc_com.append(acc_origin + jnp.cross(alpha, r) + jnp.cross(omega, jnp.cross(omega, r)))
            omegas.append(omega)
            alphas.append(alpha)
            acc_origin_prev, origin_prev = acc_origin, origins[b]
            omega_prev, alpha_prev = omega, alpha
        # ... then backward forces and moments about each joint origin.
        force = jnp.zeros(3, dtype)
        moment = jnp.zeros(3, dtype)
        bias = [None] * n
        for b in reversed(range(n)):
            f_body = self.mass[b] * acc_com[b]
            n_body = inertias[b] @ alphas[b] + jnp.cross(omegas[b], inertias[b] @ omegas[b])
            if b + 1 < n:
                moment = moment + jnp.cross(origins[b + 1] - origins[b], force)
            moment = moment + n_body + jnp.cross(coms[b] - origins[b], f_body)
            force = force + f_body
            bias[b] = axes[b] @ moment
        return mass, jnp.stack(bias)

    def _acceleration(self, q: Array, qdot: Array, tau: Array) -> Array:
        if self.n_dofs <= _RECURSIVE_MAX:
            mass, bias = self._recursive_terms(q, qdot)
        else:  # the recursions are unrolled in Python: keep compile time bounded
            mass, bias = self._mass_matrix(q), self._bias(q, qdot)
        rhs = tau - bias
        if self.n_dofs <= _UNROLLED_CHOLESKY_MAX:
            return unrolled_cholesky_solve(mass, rhs)
        return jsl.cho_solve(jsl.cho_factor(mass), rhs)

    def mass_matrix(self, q: ArrayLike) -> Float[Array, "dofs dofs"]:
        """M(q) = ∂²T/∂q̇² (kg·m²), symmetric positive (semi-)definite."""
        return _compiled(self, "_mass_matrix", self._check_q("q", q))

    def bias_forces(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        """C(q, q̇)·q̇ + G(q) (N·m), from Lagrange's equations with L = T − V.

        d/dt ∂T/∂q̇ − ∂T/∂q + ∂V/∂q = τ, and d/dt ∂T/∂q̇ = M·q̈ + (∂/∂q ∂T/∂q̇)·q̇, so the
        bias is (∂/∂q ∂T/∂q̇)·q̇ − ∂T/∂q + ∂V/∂q, every term by autodiff.
        """
        return _compiled(self, "_bias", self._check_q("q", q), self._check_q("qdot", qdot))

    def acceleration(self, q: ArrayLike, qdot: ArrayLike, tau: ArrayLike) -> Float[Array, " dofs"]:
        """q̈ (rad/s²) solving M(q)·q̈ = τ − bias(q, q̇) by Cholesky; τ in N·m.

        M and the bias come from the rigid-body recursions of `_recursive_terms`, equal to
        the Lagrangian's (`mass_matrix`, `bias_forces`) to rounding and 3× cheaper inside a
        solver loop (arm26 under vmap on CPU)."""
        return _compiled(self, "_acceleration", self._check_q("q", q),
                         self._check_q("qdot", qdot), self._check_q("tau", tau))


# Up to this many DoFs, M·q̈ = rhs is solved by a Cholesky factorisation written out in
# elementwise operations. Under vmap, LAPACK's batched potrf/potrs on CPU costs about 20 µs
# per 2×2 system (arm26's whole vector field took 21 µs per state, 95 % of it here); the
# unrolled form vectorises across the batch like any other arithmetic.
_UNROLLED_CHOLESKY_MAX = 6
# Up to this many DoFs `acceleration` uses `_recursive_terms` (unrolled, O(n³) operations).
_RECURSIVE_MAX = 12


def unrolled_cholesky_solve(mass: Array, rhs: Array) -> Array:
    n = mass.shape[0]
    low = [[None] * n for _ in range(n)]
    for j in range(n):
        diag = mass[j, j] - sum(low[j][k] ** 2 for k in range(j))
        low[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, n):
            low[i][j] = (mass[i, j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    y = [None] * n
    for i in range(n):  # L·y = rhs
        y[i] = (rhs[i] - sum(low[i][k] * y[k] for k in range(i))) / low[i][i]
    x = [None] * n
    for i in reversed(range(n)):  # Lᵀ·x = y
        x[i] = (y[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return jnp.stack(x)


@eqx.filter_jit
def _compiled(chain: SerialChain, method: str, *args):
    return getattr(chain, method)(*args)
