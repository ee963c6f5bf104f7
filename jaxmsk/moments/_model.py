"""EMG-driven joint moments along measured kinematics (no forward simulation).

    EMG e(t) → delay d → CEINMS's two-pole recursion → neural activation u → a = (e^{Au}−1)/(e^A−1)
    a, l_MT(q), v_MT = −r(q)·q̇ → Hill muscle (De Groote–Fregly 2016, rigid tendon) → F
    τ = r(q)ᵀ F

as in EMG-driven models of the knee and lower limb (Lloyd & Besier 2003, J. Biomech.
36:765–776; CEINMS, Pizzolato et al. 2015, J. Biomech. 48:3929–3936). The EMG model is
CEINMS's; the muscle is OpenSim's De Groote–Fregly 2016 muscle with an inextensible tendon
(CEINMS's "stiff tendon" option).
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..data import delay as _delay
from ..muscle import CEINMSActivation, DeGrooteFregly2016Muscle
from ..muscle._ceinms import activation_nonlinearity
from ..skeleton._path import PolynomialPath

# Common EMG channel names and the muscle names (without side suffix) they drive in OpenSim's
# lower-limb models: Rajagopal et al. 2016 (and its descendants, e.g. Moco's example3DWalking),
# gait2392 / gait10dof18musc. A channel drives every listed muscle the model has; a muscle
# listed under two channels is driven by their mean (vastus intermedius from the lateral and
# medial vasti, whose surface EMG is not recorded).
EMG_CHANNEL_MUSCLES: dict[str, tuple[str, ...]] = {
    "soleus": ("soleus", "soleus"),
    "gastrocnemius": ("gasmed", "gaslat", "med_gas", "lat_gas", "gastroc"),
    "gastrocnemius_medialis": ("gasmed", "med_gas"),
    "medial_gastrocnemius": ("gasmed", "med_gas"),
    "gastrocnemius_lateralis": ("gaslat", "lat_gas"),
    "lateral_gastrocnemius": ("gaslat", "lat_gas"),
    "tibialis_anterior": ("tibant", "tib_ant"),
    "medial_hamstrings": ("semimem", "semiten"),
    "semitendinosus": ("semiten",),
    "semimembranosus": ("semimem",),
    "biceps_femoris": ("bflh", "bfsh", "bifemlh", "bifemsh", "bifemlh", "hamstrings"),
    "lateral_hamstrings": ("bflh", "bfsh", "bifemlh", "bifemsh"),
    "vastus_lateralis": ("vaslat", "vas_lat", "vasint", "vas_int"),
    "vastus_medialis": ("vasmed", "vas_med", "vasint", "vas_int"),
    "vastus_medius": ("vasmed", "vas_med", "vasint", "vas_int"),
    "rectus_femoris": ("recfem", "rect_fem"),
    "gluteus_maximus": ("glmax1", "glmax2", "glmax3", "glut_max1", "glut_max2", "glut_max3",
                        "glut_max"),
    "gluteus_medius": ("glmed1", "glmed2", "glmed3", "glut_med1", "glut_med2", "glut_med3"),
    "peroneus_longus": ("perlong", "per_long"),
    "tensor_fasciae_latae": ("tfl",),
    "gracilis": ("grac",),
    "sartorius": ("sart",),
}


def _side(name: str) -> str | None:
    m = re.search(r"_(r|l)$", name)
    return m.group(1) if m else None


def _stem(name: str) -> str:
    return re.sub(r"_(r|l)$", "", name)


def _norm(channel: str) -> str:
    return re.sub(r"[\s\-]+", "_", channel.strip().lower())


def map_channels(channels, muscles, *, side: str | None = None,
                 mapping: dict | None = None) -> dict[str, list[str]]:
    """Which muscles each EMG channel drives.

    Args:
        channels: EMG channel names.
        muscles: the model's muscle names.
        side: "r" or "l": the leg (arm) the EMG was recorded on, for models with both sides
            (muscle names ending in _r/_l). Needed when a channel matches muscles of both.
        mapping: {channel: [muscle, ...]} given by the user ([] leaves the channel out);
            channels it does not name are matched by name as below.

    A channel matches, in this order: the muscles `mapping` gives it; a muscle of the same
    name (with the side suffix); the muscles `EMG_CHANNEL_MUSCLES` lists for it.

    Raises ValueError naming a channel that matches no muscle, a channel matching both sides
    without `side`, and muscles in `mapping` the model does not have.
    """
    muscles = list(muscles)
    if side not in (None, "r", "l"):
        raise ValueError(f"side={side!r}: give 'r', 'l' or None.")
    mapping = dict(mapping or {})
    unknown_channels = [c for c in mapping if c not in channels]
    if unknown_channels:
        raise ValueError(f"mapping names channels {unknown_channels} that the EMG does not have; "
                         f"its channels: {list(channels)}.")
    out: dict[str, list[str]] = {}
    for ch in channels:
        if ch in mapping:
            given = list(mapping[ch]) if not isinstance(mapping[ch], str) else [mapping[ch]]
            bad = [m for m in given if m not in muscles]
            if bad:
                raise ValueError(f"mapping['{ch}'] names muscles {bad} that the model does not "
                                 "have (check the side suffix).")
            out[ch] = given
            continue
        stems = (_norm(ch),) + EMG_CHANNEL_MUSCLES.get(_norm(ch), ())
        matched = [m for m in muscles if _stem(m).lower() in stems or m.lower() in stems]
        if side is not None:
            matched = [m for m in matched if _side(m) in (side, None)]
        sides = {_side(m) for m in matched} - {None}
        if len(sides) > 1:
            raise ValueError(f"EMG channel '{ch}' matches muscles on both sides ({matched}); "
                             "say which side was recorded (side='r' or 'l'; --side).")
        if not matched:
            raise ValueError(
                f"EMG channel '{ch}' matches no muscle of the model; give its muscles in a "
                f"mapping ({{\"{ch}\": [\"muscle\", ...]}}; --mapping FILE.json). Muscles: "
                f"{', '.join(muscles)}.")
        out[ch] = matched
    return out


def mapping_matrix(channel_map: dict[str, list[str]], channels, muscles) -> np.ndarray:
    """(muscles, channels) weights: each driven muscle's row averages the channels that
    list it; rows of muscles no channel drives are zero."""
    w = np.zeros((len(muscles), len(channels)))
    for j, ch in enumerate(channels):
        for m in channel_map.get(ch, []):
            w[list(muscles).index(m), j] = 1.0
    total = w.sum(1, keepdims=True)
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)


class MomentParameters(eqx.Module):
    """What an EMG-driven moment model calibrates (CEINMS's set, rigid tendon).

    Fields:
        strength: (muscles,) scale of F_max (dimensionless).
        optimal_fiber_length_scale, tendon_slack_length_scale: (muscles,) scales of l_opt
            and l_ts (dimensionless).
        emg_gain: (channels,) the EMG's fraction of maximal voluntary activation at 1.0
            (1 for MVC-normalised envelopes; below 1 for envelopes normalised to their own
            peak, as a walking trial's are).
        shape_factor: (channels,) A of the activation non-linearity, −3 < A ≤ 0.
        delay: () electromechanical delay (s).
        time_constants: (2,) s, the two poles of CEINMS's recursion as time constants
            (C_k = −exp(−1/(fs·τ_k)), so τ → 0 passes the EMG through).
    """

    strength: Float[Array, " muscles"]
    optimal_fiber_length_scale: Float[Array, " muscles"]
    tendon_slack_length_scale: Float[Array, " muscles"]
    emg_gain: Float[Array, " channels"]
    shape_factor: Float[Array, " channels"]
    delay: Float[Array, ""]
    time_constants: Float[Array, "2"]

    @classmethod
    def nominal(cls, n_muscles: int, n_channels: int, *, emg_gain: float = 1.0,
                shape_factor: float = -1.0, delay: float = 0.04,
                time_constants=(0.02, 0.04)) -> "MomentParameters":
        """The model's own muscle parameters and typical EMG-model values (gain 1, A = −1,
        40 ms delay, 20 and 40 ms time constants)."""
        f = jnp.result_type(float)
        one = jnp.ones(n_muscles, f)
        return cls(strength=one, optimal_fiber_length_scale=one, tendon_slack_length_scale=one,
                   emg_gain=jnp.full(n_channels, emg_gain, f),
                   shape_factor=jnp.full(n_channels, shape_factor, f),
                   delay=jnp.asarray(delay, f), time_constants=jnp.asarray(time_constants, f))


class EMGDrivenModel(eqx.Module):
    """Muscles, paths and the EMG → muscle map of an EMG-driven moment model.

    Fields:
        muscles: `DeGrooteFregly2016Muscle` (rigid tendon), one row per muscle.
        path: `PolynomialPath` over `coordinate_names` (lengths and moment arms).
        mapping: (muscles, channels) weights from `mapping_matrix`.
        muscle_names, coordinate_names, channel_names: static.
        path_sources: static, per muscle "FunctionBasedPath" or "fitted".
    """

    muscles: DeGrooteFregly2016Muscle
    path: PolynomialPath
    mapping: Float[Array, "muscles channels"]
    muscle_names: tuple[str, ...] = eqx.field(static=True)
    coordinate_names: tuple[str, ...] = eqx.field(static=True)
    channel_names: tuple[str, ...] = eqx.field(static=True)
    path_sources: tuple[str, ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        m, c = len(self.muscle_names), len(self.channel_names)
        if self.mapping.shape != (m, c):
            raise ValueError(f"EMGDrivenModel.mapping has shape {self.mapping.shape}; expected "
                             f"(muscles, channels) = ({m}, {c}).")
        if self.path.n_muscles != m or self.path.n_dofs != len(self.coordinate_names):
            raise ValueError("EMGDrivenModel: the path has "
                             f"{self.path.n_muscles} muscles × {self.path.n_dofs} coordinates; "
                             f"the model names {m} muscles and {len(self.coordinate_names)} "
                             "coordinates.")
        if self.muscles.tendon != "rigid":
            raise ValueError("EMGDrivenModel computes moments along measured kinematics with "
                             "rigid tendons (no fibre state); build its muscles with "
                             "tendon='rigid'.")

    @property
    def driven(self) -> np.ndarray:
        """Boolean per muscle: driven by some EMG channel (others contribute passive force)."""
        return np.asarray(self.mapping).sum(1) > 0

    def activations(self, params: MomentParameters, emg: Float[Array, "time channels"],
                    rate: float) -> Float[Array, "time muscles"]:
        """Muscle activations from processed EMG sampled at `rate` (Hz)."""
        e = _delay(emg, rate, params.delay) * params.emg_gain
        poles = jnp.exp(-1.0 / (rate * jnp.maximum(params.time_constants, 1e-6)))
        filt = CEINMSActivation(shape_factor=params.shape_factor, c1=-poles[0], c2=-poles[1],
                                delay=0.0, sample_rate=rate)
        u = filt.neural_activation(e)
        a_channels = activation_nonlinearity(jnp.clip(u, 0.0, 1.0), params.shape_factor)
        return a_channels @ self.mapping.T

    def scaled_muscles(self, params: MomentParameters) -> DeGrooteFregly2016Muscle:
        p = self.muscles.params
        return eqx.tree_at(
            lambda m: (m.params.max_isometric_force, m.params.optimal_fiber_length,
                       m.params.tendon_slack_length), self.muscles,
            (p.max_isometric_force * params.strength,
             p.optimal_fiber_length * params.optimal_fiber_length_scale,
             p.tendon_slack_length * params.tendon_slack_length_scale))

    def forces_and_moments(self, params: MomentParameters, emg, q, qdot, rate: float,
                           lead: int = 0):
        """(activations (T, M), tendon forces (T, M) N, moments (T, D) N·m) along q(t).

        `emg` is (lead + T, channels): `lead` samples before q's first (filtered, then
        dropped), as `MomentRecording.emg` holds them."""
        a = self.activations(params, emg, rate)[lead:]
        if a.shape[0] != q.shape[0]:
            raise ValueError(f"emg has {emg.shape[0]} samples: {lead} before q's {q.shape[0]} "
                             f"leave {a.shape[0]}; give lead + len(q) rows.")
        muscles = self.scaled_muscles(params)
        lengths, arms = jax.vmap(self.path.length_and_moment_arms)(q)
        velocity = -jnp.einsum("tmd,td->tm", arms, qdot)
        force = jax.vmap(lambda l, v, act: muscles._rigid_state(l, v, act).tendon_force)(
            lengths, velocity, a)
        return a, force, jnp.einsum("tmd,tm->td", arms, force)

    def moments(self, params: MomentParameters, emg, q, qdot, rate: float, lead: int = 0):
        """Joint moments (T, D) N·m: rᵀF summed over muscles."""
        return self.forces_and_moments(params, emg, q, qdot, rate, lead)[2]
