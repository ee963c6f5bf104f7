"""Zero-phase IIR filtering in JAX: Butterworth and notch design, forward–backward SOS filter.

Design happens once, at trace time, in NumPy/SciPy (`scipy.signal.butter`, `iirnotch`):
the coefficients are static configuration, like a sampling rate, never traced values. The
filtering itself is pure JAX: a `jax.lax.scan` over time of the direct-form-II-transposed
biquad recursion, so it runs under `jit`, `vmap` and `grad` on any device.

`sosfiltfilt` reproduces `scipy.signal.sosfiltfilt(sos, x, axis=0)` with SciPy's defaults
(odd extension of `padlen = 3·ntaps` samples at each end, initial conditions from the
steady state of a unit step scaled by the first sample of each pass), to rounding error
(about 1e-13 relative in float64). Time is axis 0; any trailing axes (channels, ...) are
filtered independently. Trials are batched with `jax.vmap` outside.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._checks import as_float_array, check_finite, is_concrete


def static_rate(name: str, fs) -> float:
    """`fs` as a positive Python float (Hz), or a `ValueError` naming `name` and the fix."""
    if not is_concrete(fs):
        raise ValueError(
            f"{name} must be a static Python number (a sampling rate in Hz), but it is traced. "
            "Under jax.jit, close over it (lambda x: f(x, 2000.0)) or use functools.partial."
        )
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in Hz; got {fs!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite sampling rate > 0 Hz; got {fs!r}. "
                         "Pass the rate the signal was recorded at, in Hz (e.g. 2000.0).")
    return value


def _check_cutoff(name: str, cutoff: float, fs: float) -> float:
    nyq = fs / 2.0
    c = float(cutoff)
    if not (math.isfinite(c) and 0.0 < c < nyq):
        raise ValueError(
            f"{name}={cutoff!r} Hz must satisfy 0 < {name} < fs/2: with fs={fs:g} Hz the Nyquist "
            f"frequency is {nyq:g} Hz. Choose {name} between 0 and {nyq:g} Hz"
            + (f", or use a signal sampled above {2.0 * c:g} Hz." if c >= nyq else ".")
        )
    return c


@functools.lru_cache(maxsize=256)
def _butter_cached(order: int, cutoff: tuple[float, ...], fs: float, btype: str) -> np.ndarray:
    wn = cutoff[0] if len(cutoff) == 1 else list(cutoff)
    import scipy.signal  # 1.4 s to import: only when a filter is designed

    sos = np.asarray(scipy.signal.butter(order, wn, btype=btype, output="sos", fs=fs), np.float64)
    sos.flags.writeable = False  # cached: callers get copies
    return sos


def butterworth_sos(order: int, cutoff, fs: float, btype: str, *,
                    name: str = "cutoff") -> np.ndarray:
    """Digital Butterworth filter as second-order sections (NumPy, designed at trace time).

    Equal to `scipy.signal.butter(order, cutoff, btype, output="sos", fs=fs)`.

    Args:
        order: filter order (>= 1); band-pass and band-stop filters have order 2·`order`.
        cutoff: -3 dB frequency in Hz, a number for "lowpass"/"highpass", a pair
            (low, high) with low < high for "bandpass"/"bandstop". Each must lie in (0, fs/2).
        fs: sampling rate, Hz.
        btype: "lowpass", "highpass", "bandpass" or "bandstop" (SciPy's aliases accepted).
        name: the caller's name for `cutoff`, used in error messages.

    Returns:
        Array of shape (n_sections, 6) (a fresh copy): rows [b0, b1, b2, 1, a1, a2].

    Raises:
        ValueError: a cut-off outside (0, fs/2) (naming fs and the Nyquist frequency), a bad
            order, fs <= 0, or a band with low >= high.
    """
    fs = static_rate("fs", fs)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be an integer >= 1; got {order!r}. 4 is usual for sEMG.")
    band = btype in ("bandpass", "band", "pass", "bp", "bandstop", "bs", "stop")
    if band:
        if np.ndim(cutoff) != 1 or len(cutoff) != 2:
            raise ValueError(f"{name} must be a pair (low, high) in Hz for a {btype} filter; "
                             f"got {cutoff!r}.")
        low = _check_cutoff(f"{name}[0]", cutoff[0], fs)
        high = _check_cutoff(f"{name}[1]", cutoff[1], fs)
        if not low < high:
            raise ValueError(f"{name}=({low:g}, {high:g}) Hz needs low < high; "
                             "swap or widen the band.")
        key = (low, high)
    else:
        if np.ndim(cutoff) != 0:
            raise ValueError(f"{name} must be one frequency in Hz for a {btype} filter; "
                             f"got {cutoff!r}.")
        key = (_check_cutoff(name, cutoff, fs),)
    return _butter_cached(int(order), key, fs, btype).copy()


def notch_sos(fs: float, freq: float = 50.0, quality: float = 30.0,
              harmonics: int = 1) -> np.ndarray:
    """IIR notch filters at `freq`, 2·`freq`, ..., `harmonics`·`freq` as second-order sections.

    Each section is `scipy.signal.iirnotch(k·freq, quality, fs=fs)` (a second-order notch
    with -3 dB bandwidth k·freq/quality Hz); harmonics at or above the Nyquist frequency
    fs/2 are left out. For harmonics=1 the single section equals iirnotch's (b, a).

    Args:
        fs: sampling rate, Hz.
        freq: powerline frequency, Hz (50 in Europe, Asia, Africa; 60 in the Americas).
        quality: quality factor Q = centre frequency / bandwidth (dimensionless, > 0).
        harmonics: number of harmonics to remove (>= 1).

    Returns:
        Array of shape (n_sections, 6) (a fresh copy).
    """
    fs = static_rate("fs", fs)
    freq = _check_cutoff("notch freq", freq, fs)
    if not (math.isfinite(float(quality)) and float(quality) > 0):
        raise ValueError(f"quality must be a finite number > 0; got {quality!r}. 30 is usual.")
    if isinstance(harmonics, bool) or not isinstance(harmonics, (int, np.integer)) or harmonics < 1:
        raise ValueError(f"harmonics must be an integer >= 1; got {harmonics!r}.")
    return _notch_cached(fs, freq, float(quality), int(harmonics)).copy()


@functools.lru_cache(maxsize=64)
def _notch_cached(fs: float, freq: float, quality: float, harmonics: int) -> np.ndarray:
    rows = []
    for k in range(1, harmonics + 1):
        if k * freq >= fs / 2.0:
            break
        import scipy.signal

        b, a = scipy.signal.iirnotch(k * freq, quality, fs=fs)
        rows.append(np.concatenate([b / a[0], a / a[0]]))
    sos = np.asarray(rows, np.float64)
    sos.flags.writeable = False  # cached: callers get copies
    return sos


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """Initial states (n_sections, 2) of the cascade in steady state for a unit step input.

    Same quantity as `scipy.signal.sosfilt_zi`, derived in closed form: a biquad in direct
    form II transposed fed a constant 1 settles at y = Σb/Σa, z1 = b2 − a2·y,
    z0 = (b1 + b2) − (a1 + a2)·y; section k sees the DC gain of sections < k as its input.
    """
    sos = np.asarray(sos, np.float64)
    zi = np.zeros((sos.shape[0], 2))
    scale = 1.0
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        y = (b0 + b1 + b2) / (1.0 + a1 + a2)
        zi[s] = scale * np.array([(b1 + b2) - (a1 + a2) * y, b2 - a2 * y])
        scale *= y
    return zi


def default_padlen(sos: np.ndarray) -> int:
    """SciPy's default `padlen` for `sosfiltfilt`: 3·ntaps, ntaps = 2·n_sections + 1 less
    the number of sections of first order (b2 = 0 and a2 = 0)."""
    sos = np.asarray(sos)
    ntaps = 2 * sos.shape[0] + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


def _validate_sos(sos) -> np.ndarray:
    if not is_concrete(sos):
        raise ValueError("sos must be a concrete NumPy array of filter coefficients (designed "
                         "at trace time), not a traced value; the coefficients are not "
                         "differentiable.")
    sos = np.asarray(sos, np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ValueError(f"sos must have shape (n_sections, 6); got {sos.shape}. "
                         "Design it with butterworth_sos or "
                         "scipy.signal.butter(..., output='sos').")
    if not np.all(sos[:, 3] == 1.0):
        raise ValueError("sos[:, 3] (each section's a0) must be 1; normalise each section by a0.")
    if not np.all(np.isfinite(sos)):
        raise ValueError("sos contains NaN or inf; check the filter design.")
    return sos


def _biquad_pass(coeffs: tuple, x: Array, zi: np.ndarray, first: Array, reverse: bool) -> Array:
    """One causal pass of the cascade along axis 0 (backwards in time if `reverse`), starting
    from the steady state for a constant input equal to `first` (the pass's first sample)."""
    dtype = x.dtype
    init = tuple((jnp.asarray(z0 * first, dtype), jnp.asarray(z1 * first, dtype)) for z0, z1 in zi)

    def step(state, xt):
        new = []
        cur = xt
        for (b0, b1, b2, a1, a2), (z0, z1) in zip(coeffs, state):
            y = b0 * cur + z0  # the same order of operations as scipy's _sosfilt
            new.append((b1 * cur - a1 * y + z1, b2 * cur - a2 * y))
            cur = y
        return tuple(new), cur

    _, y = jax.lax.scan(step, init, x, reverse=reverse)
    return y


@functools.partial(jax.jit, static_argnums=(0, 2))
def _filtfilt_core(coeffs: tuple, x: Array, padlen: int) -> Array:
    sos = np.array([[b0, b1, b2, 1.0, a1, a2] for b0, b1, b2, a1, a2 in coeffs])
    zi = sos_steady_state(sos)
    n = x.shape[0]
    if padlen > 0:
        # odd extension: 2·x[0] − x[padlen:0:-1] | x | 2·x[-1] − x[-2:-padlen-2:-1]
        head = 2.0 * x[:1] - x[1 : padlen + 1][::-1]
        tail = 2.0 * x[-1:] - x[::-1][1 : padlen + 1]
        ext = jnp.concatenate([head, x, tail], axis=0)
    else:
        ext = x
    y = _biquad_pass(coeffs, ext, zi, ext[0], reverse=False)
    y = _biquad_pass(coeffs, y, zi, y[-1], reverse=True)
    return y[padlen : padlen + n] if padlen > 0 else y


def sosfiltfilt(sos: ArrayLike, x: ArrayLike, *, padlen: int | None = None,
                name: str = "x") -> Array:
    """Zero-phase forward–backward filtering of `x` along axis 0 (time) by the SOS cascade `sos`.

    Reproduces `scipy.signal.sosfiltfilt(sos, x, axis=0)` with its defaults (padtype="odd"),
    to rounding error. The magnitude response is |H|² and the phase is zero; the order is
    doubled. Pure JAX (a `jax.lax.scan` over time); differentiable with respect to `x`.

    Args:
        sos: (n_sections, 6) filter coefficients, a concrete NumPy array (static).
        x: signal, shape (time,) or (time, channels, ...); any unit, kept in the output.
        padlen: samples of odd extension at each end; None is SciPy's default 3·ntaps
            (see `default_padlen`).
        name: the name of `x` used in error messages.

    Returns:
        The filtered signal, same shape and floating dtype as `x`.

    Raises:
        ValueError: `x` has no time axis, has too few samples (needs more than padlen), or
            contains NaN/inf (inside `jit`: an `eqx.error_if` runtime error).
    """
    sos = _validate_sos(sos)
    x = as_float_array(x)
    if x.ndim < 1:
        raise ValueError(f"{name} must have a time axis (shape (time,) or (time, channels)); "
                         "got a scalar.")
    edge = default_padlen(sos) if padlen is None else int(padlen)
    if edge < 0:
        raise ValueError(f"padlen must be >= 0; got {padlen}.")
    if x.shape[0] <= edge:
        raise ValueError(
            f"{name} has {x.shape[0]} samples along axis 0 (time), but this zero-phase filter "
            f"({sos.shape[0]} second-order sections) pads {edge} samples at each end and needs at "
            f"least {edge + 1} samples. Pass a longer recording, a lower filter order, or check "
            "that time is axis 0 (use x.T for (channels, time) data)."
        )
    x = check_finite(name, x)
    coeffs = tuple(tuple(float(c) for c in (r[0], r[1], r[2], r[4], r[5])) for r in sos)
    return _filtfilt_core(coeffs, x, edge)
