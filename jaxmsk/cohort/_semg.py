"""Synthetic raw surface EMG: excitation-modulated band-limited noise with a realistic
spectrum, crosstalk, baseline noise and powerline interference.

Model (one sample per row, channels along axis 1, amplitudes in mV):

    source_j(t) = drive_j(t) · n_j(t)
    raw_i(t)    = gain_i · (C · source(t))_i + baseline noise + powerline(t)

- n_j is unit-variance Gaussian noise shaped in the frequency domain to the sEMG power
  spectrum of Shwedyk, Balasubramanian and Scott (1977), as used for synthetic sEMG by
  Farina and Merletti (2000):  P(f) ∝ f_h⁴ f² / ((f² + f_l²)(f² + f_h²)²), here with
  f_l = 60 Hz and f_h = 120 Hz (median frequency ≈ 95 Hz), times the magnitude response of
  a 4th-order 20–450 Hz band-pass (the SENIAM/De Luca recording band).
- The amplitude is proportional to the drive (excitation): the assumption behind
  amplitude-based EMG-driven models such as CEINMS.
- C is a crosstalk matrix (identity = none); `neighbour_crosstalk` builds the common case in
  which each electrode picks up a fraction of its neighbours in channel order. Crosstalk
  (volume conduction) mixes the muscles' signals before the electrode's gain (skin and
  electrode properties) scales the channel, so a coefficient is relative to the channel's
  own muscle at the same drive.
- Baseline noise is white Gaussian (electrode and amplifier noise) with RMS `noise_rms`.
- Powerline: `powerline · sin(2π·f·t + φ)` plus its third harmonic at 30 % amplitude.

Everything is pure JAX and keyed: the same key gives the same signal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import as_float_array, check_finite, check_nonnegative

SPECTRUM_F_LOW = 60.0  # Hz, Shwedyk et al. (1977) spectral shape parameters
SPECTRUM_F_HIGH = 120.0  # Hz
RECORDING_BAND = (20.0, 450.0)  # Hz, SENIAM / De Luca (2010) recommended sEMG band
POWERLINE_THIRD_HARMONIC = 0.3  # amplitude of 3·f relative to f


def semg_power_spectrum(f: ArrayLike, f_low: float = SPECTRUM_F_LOW,
                        f_high: float = SPECTRUM_F_HIGH,
                        band: tuple[float, float] = RECORDING_BAND) -> Array:
    """Relative sEMG power spectral density at frequencies `f` (Hz), peak-normalised shape
    P(f) = f_h⁴f²/((f²+f_l²)(f²+f_h²)²) times a 4th-order Butterworth band-pass magnitude²."""
    f = jnp.abs(as_float_array(f))
    shape = f_high**4 * f**2 / ((f**2 + f_low**2) * (f**2 + f_high**2) ** 2)
    lo, hi = band
    ratio_lo = jnp.where(f > 0, lo / jnp.where(f > 0, f, 1.0), jnp.inf)
    bandpass = 1.0 / (1.0 + ratio_lo**8) / (1.0 + (f / hi) ** 8)
    return shape * bandpass


def shaped_noise(key: PRNGKeyArray, n: int, channels: int, fs: float, *,
                 f_low: float = SPECTRUM_F_LOW, f_high: float = SPECTRUM_F_HIGH,
                 band: tuple[float, float] = RECORDING_BAND,
                 dtype=None) -> Float[Array, "n channels"]:
    """(n, channels) Gaussian noise with the sEMG spectrum, unit variance per channel."""
    if fs <= 2 * band[1]:
        raise ValueError(f"shaped_noise: fs={fs} Hz cannot represent the {band[1]} Hz upper band "
                         f"edge; sample faster than {2 * band[1]} Hz (1–2 kHz is usual for sEMG).")
    dtype = dtype or jnp.result_type(float)
    white = jax.random.normal(key, (n, channels), dtype)
    spec = jnp.fft.rfft(white, axis=0)
    freqs = jnp.fft.rfftfreq(n, 1.0 / fs).astype(dtype)
    gain = jnp.sqrt(semg_power_spectrum(freqs, f_low, f_high, band))
    x = jnp.fft.irfft(spec * gain[:, None], n=n, axis=0)
    x = x - x.mean(axis=0)
    return (x / jnp.sqrt(jnp.mean(x**2, axis=0))).astype(dtype)


def neighbour_crosstalk(
    coefficients: Float[ArrayLike, " pairs"],
) -> Float[Array, "channels channels"]:
    """Crosstalk matrix C for channels in a row: C = I, plus coefficients[i] at (i, i+1) and
    (i+1, i) — electrode i records a fraction coefficients[i] of muscle i+1 and vice versa.
    `coefficients` has n_channels − 1 entries in [0, 1)."""
    k = as_float_array(coefficients)
    if k.ndim != 1:
        raise ValueError(f"neighbour_crosstalk: coefficients has shape {k.shape}; pass one "
                         "coefficient per neighbouring pair, shape (n_channels - 1,).")
    k = check_nonnegative("neighbour_crosstalk: coefficients", k)
    n = k.shape[0] + 1
    return jnp.eye(n, dtype=k.dtype) + jnp.diag(k, 1) + jnp.diag(k, -1)


def synthetic_semg(key: PRNGKeyArray, drive: Float[ArrayLike, "time channels"], fs: float, *,
                   gain: Float[ArrayLike, " channels"] | float = 1.0,
                   crosstalk: Float[ArrayLike, "channels channels"] | None = None,
                   noise_rms: float | ArrayLike = 0.0, powerline: float | ArrayLike = 0.0,
                   powerline_freq: float = 50.0) -> Float[Array, "time channels"]:
    """Raw sEMG (mV) whose amplitude follows `drive`.

    Args:
        key: JAX PRNG key.
        drive: (time, channels) neural drive (excitation) in [0, 1], sampled at `fs`.
        fs: sampling rate (Hz), above 900 Hz (1–2 kHz is usual).
        gain: (channels,) RMS amplitude (mV) of a channel at full drive, > 0.
        crosstalk: (channels, channels) mixing matrix (None: identity); see
            `neighbour_crosstalk`.
        noise_rms: baseline noise RMS (mV), scalar or per channel.
        powerline: powerline interference amplitude (mV), scalar or per channel.
        powerline_freq: 50 Hz (Europe, Asia) or 60 Hz (Americas).

    Returns (time, channels) raw sEMG in mV. jit-able with `fs` static; vmap over keys and
    drives for trials and subjects.
    """
    drive = check_finite("synthetic_semg: drive", as_float_array(drive))
    if drive.ndim != 2:
        raise ValueError(f"synthetic_semg: drive has shape {drive.shape}; pass (time, channels).")
    n, m = drive.shape
    dtype = drive.dtype
    k_src, k_noise, k_phase = jax.random.split(key, 3)
    gain = jnp.broadcast_to(as_float_array(gain).astype(dtype), (m,))
    source = drive * shaped_noise(k_src, n, m, fs, dtype=dtype)
    if crosstalk is not None:
        c = as_float_array(crosstalk).astype(dtype)
        if c.shape != (m, m):
            raise ValueError(f"synthetic_semg: crosstalk has shape {c.shape}; expected ({m}, {m}).")
        source = source @ c.T
    source = gain * source
    t = jnp.arange(n, dtype=dtype) / fs
    noise = jnp.broadcast_to(as_float_array(noise_rms).astype(dtype), (m,))
    baseline = noise * jax.random.normal(k_noise, (n, m), dtype)
    amp = jnp.broadcast_to(as_float_array(powerline).astype(dtype), (m,))
    phase = jax.random.uniform(k_phase, (m,), dtype, 0.0, 2 * jnp.pi)
    w = 2 * jnp.pi * powerline_freq * t[:, None]
    hum = amp * (jnp.sin(w + phase) + POWERLINE_THIRD_HARMONIC * jnp.sin(3 * (w + phase)))
    return source + baseline + hum


def mvc_drive(n: int, fs: float, channels: int, *, rest: float = 1.0, ramp: float = 0.5,
              dtype=None) -> Float[Array, "n channels"]:
    """Drive for a maximum voluntary contraction trial: `rest` s at 0, a smooth ramp of
    `ramp` s up to 1, held to `rest + ramp` s before the end, then back down; every channel
    at once (an isometric co-contraction)."""
    dtype = dtype or jnp.result_type(float)
    t = jnp.arange(n, dtype=dtype) / fs
    end = n / fs
    up = jnp.clip((t - rest) / ramp, 0.0, 1.0)
    down = jnp.clip((end - rest - t) / ramp, 0.0, 1.0)
    s = jnp.minimum(up, down)
    s = s * s * (3 - 2 * s)
    return jnp.broadcast_to(s[:, None], (n, channels))


__all__ = ["semg_power_spectrum", "shaped_noise", "neighbour_crosstalk", "synthetic_semg",
           "mvc_drive", "RECORDING_BAND"]
