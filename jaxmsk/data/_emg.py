"""Surface-EMG processing: band-pass, notch, rectification, linear envelope, MVC normalisation,
resampling and electromechanical delay — pure JAX functions that `jit`, `vmap` and `grad`.

Signals are arrays of shape (time, channels) with time along axis 0; (time,) and extra
trailing axes are accepted. Batch trials with `jax.vmap` outside. Sampling rates, cut-offs
and orders are static Python numbers (close over them under `jit`); filter coefficients are
designed once at trace time. Every filter is zero-phase (forward–backward, SciPy's
`sosfiltfilt` conventions, see `._filters`), so envelopes are not delayed by the filtering;
physiological delay is modelled explicitly with `delay`.

The standard chain (`emg_envelope`) follows the SENIAM / ISEK practice summarised by
De Luca et al. (2010): band-pass 20–450 Hz (4th-order Butterworth) to remove movement
artefact and out-of-band noise, optional powerline notch, full-wave rectification, then a
low-pass (typically 4–10 Hz; 6 Hz here) for the linear envelope, optionally normalised by
the peak envelope of a maximum voluntary contraction (MVC) trial.

References:
    Hermens H. J. et al. (2000) "Development of recommendations for SEMG sensors and sensor
    placement procedures", J. Electromyogr. Kinesiol. 10:361–374 (SENIAM).
    De Luca C. J., Gilmore L. D., Kuznetsov M., Roy S. H. (2010) "Filtering the surface EMG
    signal: movement artifact and baseline noise contamination", J. Biomech. 43:1573–1579.
    Lloyd D. G., Besier T. F. (2003) "An EMG-driven musculoskeletal model to estimate muscle
    forces and knee joint moments in vivo", J. Biomech. 36:765–776 (envelopes and delay).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._checks import as_float_array, check_finite, check_values
from ._filters import butterworth_sos, notch_sos, sosfiltfilt, static_rate

__all__ = ["bandpass", "highpass", "lowpass", "notch", "rectify", "envelope", "mvc_peak",
           "normalise_mvc", "resample", "delay", "emg_envelope"]


def _signal(name: str, x: ArrayLike) -> Array:
    x = as_float_array(x)
    if x.ndim < 1:
        raise ValueError(f"{name} must have a time axis: shape (time,) or (time, channels); "
                         "got a scalar.")
    return x


def bandpass(x: ArrayLike, fs: float, low: float = 20.0, high: float = 450.0, order: int = 4,
             *, name: str = "x") -> Array:
    """Zero-phase Butterworth band-pass along axis 0 (time).

    The default 20–450 Hz band is the usual sEMG pass band (SENIAM; De Luca et al. 2010):
    below ~20 Hz lie movement artefact and cable motion, above ~450 Hz little EMG power.
    It needs fs > 900 Hz; at lower rates pass a `high` below fs/2.

    Args:
        x: signal, (time,) or (time, channels, ...), any unit (e.g. mV).
        fs: sampling rate, Hz (static).
        low, high: -3 dB band edges of each pass, Hz, 0 < low < high < fs/2 (static).
        order: Butterworth order (static); forward–backward doubles it.
        name: the name of `x` in error messages.

    Returns:
        Filtered signal, same shape, dtype and unit as `x`.
    """
    x = _signal(name, x)
    sos = butterworth_sos(order, (low, high), fs, "bandpass", name="band")
    return sosfiltfilt(sos, x, name=name)


def highpass(x: ArrayLike, fs: float, cutoff: float, order: int = 4, *, name: str = "x") -> Array:
    """Zero-phase Butterworth high-pass along axis 0; `cutoff` in Hz, 0 < cutoff < fs/2.

    Returns an array of the shape, dtype and unit of `x`.
    """
    x = _signal(name, x)
    return sosfiltfilt(butterworth_sos(order, cutoff, fs, "highpass"), x, name=name)


def lowpass(x: ArrayLike, fs: float, cutoff: float, order: int = 4, *, name: str = "x") -> Array:
    """Zero-phase Butterworth low-pass along axis 0; `cutoff` in Hz, 0 < cutoff < fs/2.

    Returns an array of the shape, dtype and unit of `x`.
    """
    x = _signal(name, x)
    return sosfiltfilt(butterworth_sos(order, cutoff, fs, "lowpass"), x, name=name)


def notch(x: ArrayLike, fs: float, freq: float = 50.0, quality: float = 30.0, harmonics: int = 1,
          *, name: str = "x") -> Array:
    """Zero-phase powerline notch at `freq`, 2·`freq`, ..., `harmonics`·`freq` Hz.

    Each notch is `scipy.signal.iirnotch(k·freq, quality, fs=fs)` (-3 dB width k·freq/quality
    Hz per pass); harmonics at or above fs/2 are skipped. All sections are applied as one
    cascade with `sosfiltfilt`; for harmonics=1 this equals
    `scipy.signal.filtfilt(b, a, x, axis=0)`.

    Args:
        x: signal, (time,) or (time, channels, ...).
        fs: sampling rate, Hz. freq: powerline frequency, Hz (50 or 60).
        quality: quality factor (dimensionless). harmonics: how many multiples of `freq`.

    Returns:
        Filtered signal, same shape, dtype and unit as `x`.
    """
    x = _signal(name, x)
    return sosfiltfilt(notch_sos(fs, freq, quality, harmonics), x, name=name)


def rectify(x: ArrayLike) -> Array:
    """Full-wave rectification |x| (same unit as `x`).

    The derivative is sign(x) away from 0 and JAX's convention +1 at x = 0 (a valid
    subgradient), so gradients are finite everywhere.
    """
    return jnp.abs(as_float_array(x))


def envelope(x: ArrayLike, fs: float, cutoff: float = 6.0, order: int = 4, *,
             name: str = "x") -> Array:
    """Linear envelope: zero-phase Butterworth low-pass (`cutoff` Hz) of the rectified signal.

    Expects a band-passed (zero-mean) signal; `emg_envelope` runs the whole chain. Cut-offs
    of 4–10 Hz are usual (Lloyd & Besier 2003 use 6 Hz). The result can dip slightly below
    zero near sharp onsets (filter ringing of the low-pass).

    Returns:
        Envelope, same shape, dtype and unit as `x` (e.g. mV).
    """
    x = _signal(name, x)
    return lowpass(rectify(x), fs, cutoff, order, name=name)


def normalise_mvc(envelope: ArrayLike, peak: ArrayLike) -> Array:
    """Envelope divided by the per-channel MVC peak (dimensionless, 1 = the MVC peak).

    Args:
        envelope: (time, channels, ...) or (time,), in the unit of the MVC trial (e.g. mV).
        peak: per-channel normaliser from `mvc_peak`, shape envelope.shape[1:] (or
            broadcastable to it), same unit, every entry finite and > 0.

    Returns:
        The normalised envelope, shape and dtype of `envelope`.

    Raises:
        ValueError: `peak` <= 0, NaN or inf (a dead or disconnected MVC channel), or a shape
            that does not broadcast to one value per channel.
    """
    env = _signal("envelope", envelope)
    peak = as_float_array(peak)
    try:
        np.broadcast_shapes(peak.shape, env.shape[1:])
    except ValueError:
        raise ValueError(f"peak has shape {peak.shape} but envelope has channels {env.shape[1:]}; "
                         "pass one MVC peak per channel (the output of mvc_peak).") from None
    if peak.ndim > env.ndim - 1:
        raise ValueError(f"peak has shape {peak.shape}, more axes than the channels of envelope "
                         f"{env.shape[1:]}; pass one MVC peak per channel.")
    peak = check_finite("peak (MVC normaliser)", peak)
    peak = check_values("peak (MVC normaliser)", peak, lambda v: ~(v > 0), "must be > 0",
                  "A zero or negative MVC peak means a dead or disconnected channel or a wrong "
                  "MVC trial; check the MVC recording for that channel (or drop the channel).")
    return env / peak.astype(env.dtype)


def emg_envelope(raw: ArrayLike, fs: float, *, band: tuple[float, float] = (20.0, 450.0),
                 notch_freq: float | None = 50.0, notch_harmonics: int = 1, cutoff: float = 6.0,
                 order: int = 4, mvc: ArrayLike | None = None) -> Array:
    """The standard sEMG chain: band-pass → notch → full-wave rectification → low-pass envelope
    (→ divide by the MVC peak).

    Keeps the input's length and sampling rate; `resample` and `delay` are separate steps.

    Args:
        raw: raw sEMG, (time,) or (time, channels, ...), e.g. in mV.
        fs: sampling rate, Hz (static). The default band needs fs > 900 Hz.
        band: (low, high) band-pass edges, Hz (SENIAM / De Luca 2010: 20–450 Hz).
        notch_freq: powerline frequency, Hz (50 or 60), or None to skip the notch.
        notch_harmonics: number of multiples of `notch_freq` to remove (those below fs/2).
        cutoff: envelope low-pass cut-off, Hz. order: Butterworth order of both filters.
        mvc: optional per-channel MVC peak (from `mvc_peak`, unit of `raw`).

    Returns:
        Envelope of the shape and dtype of `raw`: in the unit of `raw`, or dimensionless
        (fraction of MVC) if `mvc` is given.

    Raises:
        ValueError: NaN/inf in `raw`, fs <= 0, a signal too short for the filters' padding,
            band edges outside (0, fs/2) or low >= high, or an invalid `mvc`.
    """
    fs = static_rate("fs", fs)
    if np.ndim(band) != 1 or len(band) != 2:
        raise ValueError(f"band must be a pair (low, high) in Hz; got {band!r}. "
                         "The usual sEMG band is (20.0, 450.0).")
    low, high = (float(b) for b in band)
    if not low < high:
        raise ValueError(f"band=({low:g}, {high:g}) Hz needs low < high; e.g. band=(20.0, 450.0).")
    if high >= fs / 2:
        raise ValueError(
            f"band[1]={high:g} Hz is not below the Nyquist frequency fs/2 = {fs / 2:g} Hz of raw "
            f"sampled at fs={fs:g} Hz. Pass band=({low:g}, h) with h < {fs / 2:g} Hz (e.g. "
            f"{0.9 * fs / 2:g}), or use a recording sampled above {2 * high:g} Hz."
        )
    x = bandpass(_signal("raw", raw), fs, low, high, order, name="raw")
    if notch_freq is not None:
        x = notch(x, fs, notch_freq, harmonics=notch_harmonics, name="raw")
    env = envelope(x, fs, cutoff, order, name="raw")
    return env if mvc is None else normalise_mvc(env, mvc)


def mvc_peak(mvc_raw: ArrayLike, fs: float, **envelope_options) -> Array:
    """Per-channel peak of the processed envelope of a maximum-voluntary-contraction trial.

    Args:
        mvc_raw: raw sEMG of the MVC trial, (time, channels, ...), same unit as later trials.
        fs: its sampling rate, Hz (may differ from the trials').
        **envelope_options: keyword options of `emg_envelope` (band, notch_freq, ...,
            not `mvc`); use the same options as for the trials.

    Returns:
        Peak envelope per channel, shape mvc_raw.shape[1:], in the unit of `mvc_raw`.
    """
    if "mvc" in envelope_options:
        raise ValueError("mvc_peak computes the MVC normaliser; do not pass mvc= to it.")
    return jnp.max(emg_envelope(mvc_raw, fs, **envelope_options), axis=0)


def resample(x: ArrayLike, fs_in: float, fs_out: float) -> Array:
    """Linear interpolation of `x` (rate fs_in) onto the grid t_k = k / fs_out, k = 0..n_out−1.

    The grid starts at the first sample; n_out = floor((n − 1)·fs_out/fs_in + 1e-9) + 1, so the
    last output time never exceeds the last input time. There is **no anti-aliasing filter**:
    this is meant for envelopes (already low-passed far below both rates), e.g. to bring a
    2000 Hz EMG envelope to a 100 Hz motion-capture rate. Do not use it on raw EMG.

    Args:
        x: signal, (time,) or (time, channels, ...). fs_in, fs_out: rates in Hz (static).

    Returns:
        Array of shape (n_out,) + x.shape[1:], dtype of `x`; differentiable in `x`.
    """
    fs_in = static_rate("fs_in", fs_in)
    fs_out = static_rate("fs_out", fs_out)
    x = check_finite("x", _signal("x", x))
    n = x.shape[0]
    if n < 1:
        raise ValueError("x has no samples along axis 0 (time); pass at least one.")
    n_out = int(math.floor((n - 1) * fs_out / fs_in + 1e-9)) + 1
    return _resample_core(x, n_out, fs_in / fs_out)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _resample_core(x: Array, n_out: int, step: float) -> Array:
    n = x.shape[0]
    pos = np.arange(n_out) * step  # output times in input samples (static)
    i0 = np.clip(np.floor(pos + 1e-9).astype(np.int64), 0, max(n - 2, 0))
    frac = np.clip(pos - i0, 0.0, 1.0) if n > 1 else np.zeros(n_out)
    i1 = np.minimum(i0 + 1, n - 1)
    w = jnp.asarray(frac, x.dtype).reshape((n_out,) + (1,) * (x.ndim - 1))
    return x[i0] * (1 - w) + x[i1] * w


def delay(x: ArrayLike, fs: float, seconds: ArrayLike) -> Array:
    """Shift `x` later in time by `seconds` (e.g. the electromechanical delay, ~10–100 ms).

    y(t) = x(t − seconds), by linear interpolation between samples (fractional delays
    allowed); for t < seconds the first sample is held. A negative `seconds` shifts earlier,
    holding the last sample. The output has the length of `x`. Differentiable with respect
    to `x` and to `seconds` (a fittable parameter); the gradient in `seconds` is
    −fs·(x[i+1] − x[i]) of the segment interpolated, and 0 where a sample is held.

    Args:
        x: signal, (time,) or (time, channels, ...). fs: its rate, Hz (static).
        seconds: delay in s, a scalar (may be traced).

    Returns:
        Delayed signal, shape and dtype of `x`.
    """
    fs = static_rate("fs", fs)
    x = check_finite("x", _signal("x", x))
    seconds = as_float_array(seconds)
    if seconds.ndim != 0:
        raise ValueError(f"seconds must be a scalar delay in s; got shape {seconds.shape}. "
                         "For one delay per channel, vmap over channels: jax.vmap(lambda xc, s: "
                         "delay(xc, fs, s), in_axes=(1, 0), out_axes=1)(x, seconds).")
    seconds = check_finite("seconds", seconds)
    if x.shape[0] < 2:
        return x
    return _delay_core(x, fs, seconds)


@functools.partial(jax.jit, static_argnums=(1,))
def _delay_core(x: Array, fs: float, seconds: Array) -> Array:
    n = x.shape[0]
    pos = jnp.clip(jnp.arange(n, dtype=x.dtype) - seconds.astype(x.dtype) * fs, 0.0, n - 1.0)
    i0 = jnp.clip(jnp.floor(pos), 0, n - 2).astype(jnp.int32)
    w = (pos - i0.astype(x.dtype)).reshape((n,) + (1,) * (x.ndim - 1))
    return x[i0] * (1 - w) + x[i0 + 1] * w
