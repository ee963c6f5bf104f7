"""How much faster are leave-one-subject-out folds trained together (one vmapped step)?

Generic training (`jaxmsk.train`: every layer, data + physics under the
generic model) of F leave-one-subject-out folds on a synthetic cohort of the built-in wrist
(1 DoF, 5 compliant-tendon muscles) with the paper's CNN (`jaxmsk.nn.CNN` defaults,
receptive field 32) and segments of `--segment-length` predictions, two ways:
- sequential: `train` once per held-out subject (one compiled step, F runs);
- stacked: `jaxmsk.train_generic_folds` (`fit_stacked`: the F folds' steps in one
  `eqx.filter_vmap`-ed, jit-compiled step).
Each way runs twice with the same inputs, after `jax.clear_caches()`: the first call
includes compilation (sequential: one step and one validation loss shared by the folds;
stacked: one per F), the second is the steady state; compile time = first − second. Results are
blocked on (`jax.block_until_ready`). Early stopping is off by default (`--patience`), so
both ways do `--steps` steps per fold. The stacked results are compared with the
sequential ones (they are the same optimisation; differences are floating-point rounding).

    python -m benchmarks.folds [--folds 2,4,8] [--steps 40] [--batch-size 32]
        [--subjects N] [--duration 4] [--cohort DIR] [--dtype float32] [--out FILE]

`--cohort DIR` loads the synthetic cohort from DIR if it holds one, else generates it and
saves it there (generation is minutes on a CPU). Prints a markdown table naming the device
and writes JSON to `--out` (default benchmarks/results/folds.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", default="2,4", help="numbers of folds F to time, e.g. 2,4,8")
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps per fold")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--patience", type=int, default=10**9,
                    help="early stopping (default off: every fold runs --steps steps)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--segment-length", type=int, default=64)
    ap.add_argument("--subjects", type=int, default=None,
                    help="cohort size (default the largest F; each fold holds one out)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per trial")
    ap.add_argument("--repetitions", type=int, default=1, help="trials per protocol")
    ap.add_argument("--cohort", type=Path, default=None,
                    help="folder to load the cohort from, or to save it to once generated")
    ap.add_argument("--no-physics", action="store_true", help="data-only loss")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "folds.json")
    args = ap.parse_args(argv)
    folds = sorted({int(x) for x in args.folds.split(",")})
    n_subjects = args.subjects or max(folds)
    if min(folds) < 1 or max(folds) > n_subjects:
        ap.error(f"--folds {args.folds}: each F must be between 1 and the cohort size "
                 f"{n_subjects} (--subjects).")

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import equinox as eqx
    import numpy as np

    import jaxmsk as msk
    from jaxmsk._learn.folds import train_generic_folds
    from jaxmsk._learn.transfer import TransferConfig, train
    from jaxmsk.io._atomic import atomic_write_text

    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    if device.platform == "cpu":
        device_name += f" ({os.cpu_count()} cores)"
    say = lambda s: print(s, flush=True)  # noqa: E731
    wrist = msk.models.wrist()
    t0 = time.perf_counter()
    if args.cohort is not None and (args.cohort / "cohort.json").exists():
        cohort = msk.io.load_cohort(args.cohort)
        if len(cohort.subject_ids) < n_subjects:
            ap.error(f"{args.cohort} holds {len(cohort.subject_ids)} subjects, fewer than "
                     f"{n_subjects}; give another --cohort folder.")
        say(f"cohort loaded from {args.cohort} ({time.perf_counter() - t0:.0f} s)")
    else:
        say(f"generating a synthetic cohort: {n_subjects} subjects x 4 protocols x "
            f"{args.repetitions} x {args.duration:g} s ...")
        cohort = msk.cohort.synthetic_cohort(wrist, n_subjects, jax.random.key(args.seed),
                                           repetitions=args.repetitions,
                                           duration=args.duration)
        say(f"  done in {time.perf_counter() - t0:.0f} s")
        if args.cohort is not None:
            msk.io.save_cohort(args.cohort, cohort)
    dataset = cohort.to_dataset().process()
    config = TransferConfig(segment_length=args.segment_length, generic_steps=args.steps,
                            batch_size=args.batch_size, eval_every=args.eval_every,
                            patience=args.patience)
    physics = not args.no_physics
    net = config.make_network(wrist.n_muscles, wrist.n_dofs + wrist.n_muscles,
                              jax.random.key(0))
    say(f"# jaxmsk stacked-folds benchmark — device {device_name}, {args.dtype}; wrist, CNN "
        f"(receptive field {net.receptive_field}), segments of {args.segment_length} "
        f"predictions, batch {args.batch_size}, {args.steps} steps per fold, "
        f"{'data + physics' if physics else 'data only'}")

    def block(results):
        jax.block_until_ready([eqx.filter(r.predictor, eqx.is_array) for r in results])
        return results

    def sequential(targets, keys):
        return block([train(dataset.leave_one_subject_out(t)[0], wrist, config, key=k,
                            physics=physics) for t, k in zip(targets, keys)])

    def stacked(targets, keys):
        return block(train_generic_folds(dataset, targets, wrist, config, keys,
                                         physics=physics))

    def timed(fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        return out, time.perf_counter() - t

    rows = []
    for n in folds:
        targets = list(cohort.subject_ids[:n])
        keys = list(jax.random.split(jax.random.key(args.seed + 1), n))
        row = {"folds": n, "targets": targets}
        for name, fn in (("sequential", sequential), ("stacked", stacked)):
            jax.clear_caches()  # each way compiles in its first call, also after another F
            results, first = timed(fn, targets, keys)
            results2, steady = timed(fn, targets, keys)
            steps = sum(r.history[-1]["step"] for r in results)
            row[name] = {"first_s": first, "steady_s": steady, "compile_s": first - steady,
                         "fold_steps": steps, "fold_steps_per_s": steps / steady}
            row[name + "_results"] = results
            say(f"  F={n} {name:10s}: first call {first:7.1f} s, steady {steady:7.1f} s "
                f"(compile ~{first - steady:.1f} s), {steps / steady:.1f} fold-steps/s")
        seq, stk = row.pop("sequential_results"), row.pop("stacked_results")
        rel, dval, same_steps = 0.0, 0.0, True
        for a, b in zip(seq, stk):
            for x, y in zip(jax.tree.leaves(eqx.filter(a.predictor, eqx.is_array)),
                            jax.tree.leaves(eqx.filter(b.predictor, eqx.is_array))):
                x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
                rel = max(rel, float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30)))
            same_steps &= (a.best_step == b.best_step
                           and [h["step"] for h in a.history] == [h["step"] for h in b.history])
            dval = max(dval, max(abs(h["val_loss"] - g["val_loss"]) / abs(h["val_loss"])
                                 for h, g in zip(a.history, b.history)))
        row["speedup_steady"] = row["sequential"]["steady_s"] / row["stacked"]["steady_s"]
        row["speedup_first"] = row["sequential"]["first_s"] / row["stacked"]["first_s"]
        row["agreement"] = {"max_rel_param_diff": rel, "max_rel_val_loss_diff": dval,
                            "same_steps_and_best_step": bool(same_steps)}
        say(f"  F={n} stacked vs sequential: params max rel diff {rel:.1e}, validation "
            f"losses {dval:.1e}, same steps and best step: {same_steps}")
        rows.append(row)

    lines = [f"Device: {device_name}, {args.dtype}; {args.steps} steps per fold, batch "
             f"{args.batch_size}, segments of {args.segment_length}, "
             f"{'data + physics' if physics else 'data only'}.", "",
             "| folds | sequential steady (s) | stacked steady (s) | speed-up steady | "
             "sequential compile (s) | stacked compile (s) | speed-up incl. compile | "
             "fold-steps/s seq / stacked |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, k = r["sequential"], r["stacked"]
        lines.append(f"| {r['folds']} | {s['steady_s']:.2f} | {k['steady_s']:.2f} | "
                     f"{r['speedup_steady']:.2f}× | {s['compile_s']:.1f} | {k['compile_s']:.1f} | "
                     f"{r['speedup_first']:.2f}× | {s['fold_steps_per_s']:.1f} / "
                     f"{k['fold_steps_per_s']:.1f} |")
    table = "\n".join(lines)
    print(table)
    summary = dict(device=device_name, dtype=args.dtype, model="wrist", network="CNN",
                   receptive_field=net.receptive_field, segment_length=args.segment_length,
                   batch_size=args.batch_size, steps=args.steps, eval_every=args.eval_every,
                   patience=args.patience, physics=physics, subjects=n_subjects,
                   trials_per_subject=cohort.n_trials, duration_s=args.duration, rows=rows,
                   table=table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n", overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
