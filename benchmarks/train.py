"""How fast is a training step, and what does the physics cost?

One optimiser step of `fit` (`jaxmsk._learn.train.train_step`: forward, loss, gradient, Adam
update; jit-compiled) on the built-in wrist (1 DoF, 5 compliant-tendon muscles) with the
paper's CNN (`jaxmsk.nn.CNN`, defaults: receptive field 32) and segments of 64 predictions
(`TransferConfig`'s defaults), every layer trainable (generic training), for
- data only: `LossWeights(0, 0, 0)`;
- data + physics: the default `LossWeights()` (equation-of-motion residual and the
  muscle-consistency residual: the compliant Hill muscles along every segment, driven by the
  sEMG → activation dynamics), as `fit` runs it in generic training: the physical
  parameters are not trained, so the activations depend on the data alone and `fit`
  integrates them once per segment before the first step (`cached_activation`; that
  one-time cost is printed per segment);
- data + physics, activation in the step: the same loss with the activation dynamics
  integrated inside every step, as in personalisation, where the electromechanical delay is
  trained (`pi_transfer`, `pi_no_transfer`, `full_finetune`);
at batch sizes 8 … 512 segments. Beside them, the step of `pi_hybrid`
(`jaxmsk._learn.hybrid.personalise_hybrid`: the excitation-correction head and the strengths
fitted through the simulator; every segment, 1 s by default, integrated by diffrax under
`vmap` and differentiated through the integration) on a synthetic wrist subject, whose
segments per step are set by its recorded time (`--hybrid-seconds`, per trial, 4 trials).
The batch is on the device already (the host→device copy of
`fit` is not timed). Compile time (first call minus a steady call) is reported apart from
the steady state, the median of `--repeats` steps, each blocked on (`jax.block_until_ready`).
The network steps take random arrays of the right shapes and magnitudes: their cost does not
depend on the values.

    python -m benchmarks.train [--batches 8,32,128,512] [--repeats 10] [--dtype float32]

Prints a markdown table naming the device and writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="8,32,128,512", help="batch sizes (segments)")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--segment-length", type=int, default=64)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--hybrid-seconds", default="2,8",
                    help="seconds per trial of the pi_hybrid subject (4 trials), one run each; "
                         "'' to skip")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import jaxmsk as msk
    from jaxmsk._learn.train import (
        cached_activation,
        make_optimizer,
        train_step,
        trainable_filter,
    )
    from jaxmsk.data import Segments

    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    if device.platform == "cpu":
        device_name += f" ({os.cpu_count()} cores)"
    model = msk.models.wrist()
    n_mus, n_dofs, length, dt = model.n_muscles, model.n_dofs, args.segment_length, 0.01
    net = msk.nn.CNN(n_mus, n_dofs + n_mus, key=jax.random.key(0))
    span = net.receptive_field + length - 1
    rng = np.random.default_rng(0)

    def batch(n):
        t = np.arange(length) * dt
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        return (rng.uniform(0.0, 0.3, (n, span, n_mus)),
                0.5 * np.sin(2 * np.pi * 0.5 * t[None, :, None] + phase),
                rng.uniform(5.0, 60.0, (n, length, n_mus)))

    emg, q, f = batch(512)
    predictor = msk.Predictor.create(net, Segments(emg, q, f, np.zeros(512, int), ("S",), 100.0))
    adjustment = msk.SubjectAdjustment.identity(n_mus)
    spec = trainable_filter(predictor, adjustment, "all", False)
    params0, static = eqx.partition((predictor, adjustment), spec)
    optim = make_optimizer(3e-3, 1000)
    modes = {"data": msk.LossWeights(0.0, 0.0, 0.0), "data+physics": msk.LossWeights(),
             "physics in step": msk.LossWeights()}
    print(f"# jaxmsk train-step benchmark — device {device_name}, {args.dtype}; wrist, CNN "
          f"(receptive field {net.receptive_field}), segments of {length} predictions, all "
          "layers trainable", flush=True)

    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        e_np, q_np, f_np = batch(b)
        e, qq, ff = (jnp.asarray(x) for x in (e_np, q_np, f_np))
        cached_activation(adjustment, model, e_np, dt, length)  # compile
        t0 = time.perf_counter()
        act = jnp.asarray(cached_activation(adjustment, model, e_np, dt, length))
        cache_s = (time.perf_counter() - t0) / b
        for mode, weights in modes.items():
            params, state = params0, optim.init(params0)
            a = act if mode == "data+physics" else None

            def step(p, s):  # called in this iteration only
                return train_step(p, static, s, e, qq, ff, model, optim, weights, dt,  # noqa: B023
                                  a)  # noqa: B023

            t0 = time.perf_counter()
            params, state, loss, _ = jax.block_until_ready(step(params, state))
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                params, state, loss, _ = jax.block_until_ready(step(params, state))
                times.append(time.perf_counter() - t0)
            steady = statistics.median(times)
            if not np.isfinite(float(loss)):
                raise RuntimeError(f"{mode}, batch {b}: the loss is {float(loss)}")
            rows.append(dict(mode=mode, batch=b, compile_s=first - steady, step_s=steady,
                             steps_per_s=1.0 / steady, segments_per_s=b / steady,
                             predictions_per_s=b * length / steady,
                             activation_cache_s_per_segment=cache_s))
            print(f"  batch {b:4d} {mode:15s}: {steady * 1e3:9.2f} ms per step "
                  f"(compile {first - steady:.1f} s)", flush=True)
        print(f"  batch {b:4d} activation cache: {cache_s * 1e6:.1f} µs per segment, once",
              flush=True)

    by = {(r["mode"], r["batch"]): r for r in rows}
    lines = ["| batch | data-only step (ms) | data+physics step (ms) | physics overhead | "
             "activation in the step (ms) | its overhead | activation cache, once (µs/segment) "
             "| steps/s (data+physics) | compile data / physics (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b in sorted({r["batch"] for r in rows}):
        d, p, s_ = by[("data", b)], by[("data+physics", b)], by[("physics in step", b)]
        p["physics_overhead"] = p["step_s"] / d["step_s"]
        s_["physics_overhead"] = s_["step_s"] / d["step_s"]
        lines.append(f"| {b} | {d['step_s'] * 1e3:.2f} | {p['step_s'] * 1e3:.2f} | "
                     f"{p['physics_overhead']:.2f}× | {s_['step_s'] * 1e3:.2f} | "
                     f"{s_['physics_overhead']:.2f}× | "
                     f"{p['activation_cache_s_per_segment'] * 1e6:.1f} | "
                     f"{p['steps_per_s']:.3g} | {d['compile_s']:.1f} / {p['compile_s']:.1f} |")
    hybrid_rows = []
    for seconds in (float(x) for x in args.hybrid_seconds.split(",") if x.strip()):
        hybrid_rows.append(hybrid_step(model, net, seconds, args.repeats))
        r = hybrid_rows[-1]
        print(f"  pi_hybrid, {r['segments']} segments of {r['samples']} samples: "
              f"{r['step_s'] * 1e3:.1f} ms per step (first step {r['first_step_s']:.1f} s)",
              flush=True)
    if hybrid_rows:
        lines += ["", f"| pi_hybrid: segments per step ({hybrid_rows[0]['samples']} samples "
                  "each) | step (ms) | per segment (ms) "
                  "| first step, compile included (s) |", "|---:|---:|---:|---:|"]
        for r in hybrid_rows:
            lines.append(f"| {r['segments']} | {r['step_s'] * 1e3:.1f} | "
                         f"{r['step_s'] * 1e3 / r['segments']:.2f} | {r['first_step_s']:.1f} |")
    table = "\n".join(lines)
    print(table)
    from jaxmsk.io._atomic import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = dict(device=device_name, dtype=args.dtype, model="wrist", network="CNN",
                   receptive_field=net.receptive_field, segment_length=length,
                   repeats=args.repeats, rows=rows, hybrid=hybrid_rows, table=table)
    atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n", overwrite=True)
    return 0


def hybrid_step(model, net, seconds: float, repeats: int) -> dict:
    """Median step time of `personalise_hybrid` on one synthetic subject's 4 trials of
    `seconds` (its steps are timed blocked on; the first includes compilation)."""
    import jax

    import jaxmsk as msk
    from jaxmsk._learn.calibrated import CalibratedMSK
    from jaxmsk._learn.hybrid import HybridConfig, personalise_hybrid
    from jaxmsk._learn.train import Predictor, make_segments
    from jaxmsk.data import Dataset

    cohort = msk.cohort.synthetic_cohort(model, 2, jax.random.key(0), repetitions=1,
                                         duration=seconds)
    data = cohort.to_dataset().process()
    share = Dataset(tuple(t for t in data.trials if t.subject == cohort.subject_ids[0]))
    generic = Predictor.create(net, make_segments(data, net.receptive_field, 16))
    steps = repeats + 1
    r = personalise_hybrid(CalibratedMSK(model, msk.EMGExcitation()), generic, share,
                           HybridConfig(steps=steps, eval_every=steps, patience=steps),
                           key=jax.random.key(1))
    samples = int(round(HybridConfig().segment_seconds * share.trials[0].fs))
    return {"trial_seconds": seconds, "segments": r.n_segments, "samples": samples,
            "step_s": r.step_seconds, "first_step_s": r.first_step_seconds}


if __name__ == "__main__":
    raise SystemExit(main())
