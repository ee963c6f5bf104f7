"""Leave-one-subject-out study of physics-informed transfer learning (Zhang et al., "Boosting
Personalised Musculoskeletal Modelling with Physics-informed Knowledge Transfer", IEEE TIM
72:2500811, 2022) on a synthetic wrist cohort, with a sweep of the target subject's data share.

    python -m experiments.transfer.run                      # the full study (see README.md)
    python -m experiments.transfer.run --quick --subjects 3 --folds 1 --out /tmp/transfer_quick

Protocol:
1. Cohort: `synthetic_cohort(models.wrist(), --subjects)` with its defaults (4 protocols × 2
   repetitions = 8 trials of 10 s per subject), sEMG processed to 100 Hz envelopes.
2. For each held-out subject (a fold): the generic CNN is trained once on the others (data +
   physics, `jaxmsk.train`) and reused for every share.
3. Shares. A share of f is f of the subject's recorded time, given as k = f·N·T / c chunks of
   c = `--chunk` s (default 2 s), each c s of one trial from `--share-start` (default 1 s,
   the end of the protocols' fade-in from rest), trials picked protocol by protocol (so
   5 % = 2 chunks from 2 protocols, 10 % = 4 chunks, one per protocol, 20 % = 1–3 s of all
   8 trials). Shares are nested (5 % ⊂ 10 % ⊂ 20 %). The test set is the same for every
   share: every trial after its first `--share-start` + c s. The fade-in (0–1 s) is in
   neither: it is an artefact of starting the synthetic protocols from rest.
   Why not the first f of every trial (`Dataset.share(fraction=f)`, the demo's definition)?
   Personalisation validates on the last 20 % of each share trial in time, and with the
   CNN's 0.32 s receptive field that needs ≥ 34 samples: 5 % (0.5 s) and 10 % (1 s) of a
   10 s trial are too short, and `split_in_time` raises. Chunks keep the amount of data and
   make every share feasible; at 20 % the two definitions coincide.
4. Every method of `_transfer.METHODS` is trained on the share (the same budget, the same
   keys for every share) and scored on the test set: angle RMSE (rad), force RMSE (N), R²,
   the equation-of-motion residual, and, for the methods that personalise physical
   parameters, |log(estimated / true)| of the F_max scales (generic model: |log true|).

Outputs in --out: fold_SXX.json per fold (written atomically after every share, so a killed
run resumes: finished shares and folds are skipped, the generic network is reloaded from
generic/), traces/ (predictions on one test trial per fold and share), results.json,
results.md, error_vs_share.png and traces.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QUICK = dict(repetitions=1, generic_steps=60, personal_steps=20, eval_every=10, patience=3)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE / "results"), help="results folder")
    p.add_argument("--subjects", type=int, default=8, help="subjects in the cohort")
    p.add_argument("--folds", type=int, default=None,
                   help="held-out subjects to run, the first N in subject order (default all)")
    p.add_argument("--shares", default="0.05,0.1,0.2",
                   help="target-data shares, fractions of the subject's recorded time")
    p.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (cohort and training)")
    p.add_argument("--generic-steps", type=int, default=None, help="default 1500 (TransferConfig)")
    p.add_argument("--personal-steps", type=int, default=None, help="default 400 (TransferConfig)")
    p.add_argument("--calibration-fit", default=None,
                   help="what calibrated_msk fits, comma-separated identify names (default "
                   "max_isometric_force; 'strength' is one F_max scale for every muscle)")
    p.add_argument("--hybrid", default=None,
                   help="pi_hybrid settings as comma-separated HybridConfig fields, e.g. "
                        "'start=calibrated,force_prior=false,steps=300'")
    p.add_argument("--chunk", type=float, default=2.0, help="seconds per share chunk")
    p.add_argument("--share-start", type=float, default=1.0,
                   help="seconds into each trial where share chunks start (default 1: after "
                        "the protocols' 1 s fade-in from rest, which the test set does not "
                        "have; 0 was the first protocol, see README.md)")
    p.add_argument("--share-labels", choices=("all", "angle"), default="all",
                   help="labels the methods may use from the target's share: 'all' (angles "
                        "and muscle forces) or 'angle' (no force labels, as for a real new "
                        "subject; forces then learn from the physics loss only). The test set "
                        "keeps its forces for scoring.")
    p.add_argument("--label-noise", type=float, default=0.0,
                   help="add Gaussian white noise to the share's labels (angles and forces; "
                        "the test set stays clean), sd = this fraction of each label "
                        "channel's sd over the share (e.g. 0.3)")
    p.add_argument("--stack-folds", action="store_true",
                   help="train the folds' generic networks together under vmap "
                        "(jaxmsk.train_generic_folds; one compiled step for all folds, F times "
                        "the memory, no mid-training checkpoints) instead of one after another")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repetition per protocol, 60 generic and 20 personal steps")
    p.add_argument("--x64", action="store_true", help="float64 (default float32, as the demo)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--cohort-cache", default=None, metavar="DIR",
                   help="keep the generated cohort in DIR (jaxmsk.io.save_cohort, one folder "
                        "per subjects/repetitions/seed/dtype/jaxmsk version) and load it from "
                        "there in later runs instead of simulating it again")
    p.add_argument("--distributed", action="store_true",
                   help="join the processes of `python -m jaxmsk.launch` or a cluster manager "
                        "(jax.distributed) and split the folds over them (round robin); each "
                        "process writes its folds' files, process 0 the results")
    return p.parse_args(argv)


class Clock:
    """Progress lines prefixed with the elapsed wall time."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, line: str) -> None:
        print(f"[{self.elapsed():7.0f} s] {line}", flush=True)


def write_json(path: Path, obj) -> None:
    """Atomically (temporary file + os.replace, see `jaxmsk.io._atomic`)."""
    from jaxmsk.io._atomic import atomic_write_text
    from jaxmsk.io._checkpoint import json_default

    atomic_write_text(path, json.dumps(obj, indent=1, default=json_default) + "\n",
                      overwrite=True)


# ---------------------------------------------------------------------------------------
# Shares


def _protocol(trial_name: str) -> str:
    return trial_name.split("#")[0].rsplit("_", 1)[0]


def trial_order(target_data, key) -> list[str]:
    """The target's trial names in the order shares take them: a random order (per key),
    then stably by repetition rank within the protocol, so the first k trials span as many
    protocols as possible. Taking the first k for every share makes the shares nested."""
    import jax

    names = [t.name for t in target_data.trials]
    perm = np.asarray(jax.random.permutation(key, len(names))).tolist()
    seen: dict[str, int] = {}
    ranked = []
    for pos, j in enumerate(perm):
        proto = _protocol(names[j])
        ranked.append((seen.get(proto, 0), pos, names[j]))
        seen[proto] = seen.get(proto, 0) + 1
    return [n for _, _, n in sorted(ranked)]


def noisy_labels(share, fraction: float, seed: int):
    """The share with Gaussian white noise on its joint angles and muscle forces, sd =
    `fraction` × each channel's sd over the share (the labels a real subject's inverse
    kinematics and force estimates would give are noisy; the test set keeps clean ones)."""
    import dataclasses

    from jaxmsk.data import Dataset

    rng = np.random.default_rng(seed)
    q_sd = np.std(np.concatenate([t.q for t in share.trials]), axis=0)
    f_sd = np.std(np.concatenate([t.forces for t in share.trials]), axis=0)
    return Dataset(tuple(dataclasses.replace(
        t, q=t.q + rng.normal(0.0, fraction * q_sd, t.q.shape),
        forces=t.forces + rng.normal(0.0, fraction * f_sd, t.forces.shape))
        for t in share.trials))


def make_share(target_data, fraction: float, order: list[str], chunk: float, start: float,
               rf: int, validation_fraction: float):
    """(share, test, info) for one share fraction (see the module docstring); `rf` and
    `validation_fraction` only describe which labels the personalisation trains on."""
    from jaxmsk.data._dataset import Dataset

    lengths = {t.n_samples for t in target_data.trials}
    fs = target_data.trials[0].fs
    if len(lengths) != 1:
        raise ValueError(f"trials of unequal length {sorted(lengths)}: chunked shares need "
                         "equal trials.")
    n = lengths.pop()
    chunk_n, start_n = int(round(chunk * fs)), int(round(start * fs))
    if start_n + chunk_n >= n:
        raise ValueError(f"--share-start {start} + --chunk {chunk} s leave no test data in "
                         f"{n / fs:.1f} s trials.")
    k = int(round(fraction * len(target_data.trials) * n / chunk_n))
    if not 1 <= k <= len(target_data.trials):
        raise ValueError(f"share {fraction}: {k} chunks of {chunk} s; choose shares between "
                         f"{chunk_n / (len(target_data.trials) * n):.3f} and "
                         f"{chunk_n / n:.3f} or another --chunk.")
    data = target_data
    if start_n:
        _, data = data.share(None, fraction=start_n / n)
    first, test = data.share(None, fraction=chunk_n / (n - start_n))
    chosen = set(order[:k])
    share = Dataset(tuple(t for t in first.trials if t.name.split("#")[0] in chosen))
    assert all(t.n_samples == chunk_n for t in share.trials), "share chunk lengths"
    info = {"fraction_requested": fraction,
            "labels": label_coverage(share, test, rf, validation_fraction, start_n / fs),
            "fraction": k * chunk_n / (len(target_data.trials) * n),
            "chunks": k, "chunk_s": chunk, "share_start_s": start,
            "share_trials": [t.name.split("#")[0] for t in share.trials],
            "test_trials": [t.name for t in test.trials],
            "test_seconds_per_trial": (n - start_n - chunk_n) / fs}
    return share, test, info


def label_coverage(share, test, rf: int, validation_fraction: float, start_s: float) -> dict:
    """What the fine-tuning sees against what it is scored on: the angles (rad) of the
    samples the share's training segments predict (`_transfer.split_in_time`: the first
    1 − validation_fraction of each chunk, from the receptive field's end) and of the test
    set; how many of those training labels lie in a trial's fade-in from rest; how many
    labels validation (early stopping) has."""
    from jaxmsk.cohort._protocols import FADE_IN_S

    train_q, val_n, fade = [], 0, 0
    for t in share.trials:
        cut = int(round((1.0 - validation_fraction) * t.n_samples))
        idx = np.arange(rf - 1, cut)
        train_q.append(t.q[idx, 0])
        fade += int(np.sum(start_s + idx / t.fs < FADE_IN_S))
        val_n += t.n_samples - cut  # validation windows take their history before the cut
    train_q = np.concatenate(train_q)
    test_q = np.concatenate([t.q[rf - 1:, 0] for t in test.trials])
    return {"train_labels": int(train_q.size), "val_labels": int(val_n),
            "train_labels_in_fade_in": fade,
            "train_angle_sd": float(train_q.std()), "test_angle_sd": float(test_q.std()),
            "train_angle_range": [float(train_q.min()), float(train_q.max())],
            "test_angle_range": [float(test_q.min()), float(test_q.max())]}


# ---------------------------------------------------------------------------------------
# One fold


def load_or_train_generic(source, model, config, key, path: Path, say):
    """(predictor, fit info, trained): the fold's generic predictor, loaded from `path` if
    a previous run saved it, else trained (resuming from the fit's own checkpoint if the run
    was killed mid-training) and saved there."""
    import jax.numpy as jnp

    from jaxmsk import train
    from jaxmsk._learn.train import Predictor
    from jaxmsk.io._checkpoint import load_checkpoint, save_checkpoint

    t = source.trials[0]
    n_dofs = t.q.shape[1]
    n_out = n_dofs + t.forces.shape[1]
    if path.exists():
        net = config.make_network(len(t.emg_labels), n_out, _key(0))
        like = Predictor(net, jnp.zeros(n_out), jnp.ones(n_out), n_dofs)
        try:
            pred, meta = load_checkpoint(path, like)
            say(f"generic network loaded from {path}")
            return pred, meta, False
        except (ValueError, FileNotFoundError) as e:
            say(f"cannot load {path} ({e}); training again")
    path.parent.mkdir(parents=True, exist_ok=True)
    resume = path.with_name(path.stem + "_fit.eqx")
    r = train(source, model, config, key=key, progress=say, checkpoint=resume)
    meta = {"best_step": r.best_step, "seconds": round(r.seconds, 1),
            "steps_run": r.history[-1]["step"] if r.history else 0}
    save_checkpoint(path, r.predictor, metadata=meta, overwrite=True)
    for f in (resume, Path(str(resume) + ".json")):
        if f.exists():
            f.unlink()
    return r.predictor, meta, True


def stack_generic(dataset, targets, model, config, k_folds, folder: Path, say, timing):
    """Train the generic networks that `folder` lacks for `targets` ((fold index, subject)
    pairs) together (`jaxmsk.train_generic_folds`), with the keys the sequential loop would
    use, and save them where `load_or_train_generic` finds them."""
    import jax

    from jaxmsk import train_generic_folds
    from jaxmsk.io._checkpoint import save_checkpoint

    todo = [(i, t) for i, t in targets if not (folder / f"generic_{t}.eqx").exists()]
    if not todo:
        return
    keys = [jax.random.split(jax.random.fold_in(k_folds, i), 3)[0] for i, _ in todo]
    say(f"training {len(todo)} generic networks together (vmap over folds) ...")
    t0 = time.perf_counter()
    fits = train_generic_folds(dataset, [t for _, t in todo], model, config, keys, progress=say)
    seconds = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    for (_, target), r in zip(todo, fits):
        meta = {"best_step": r.best_step, "seconds": round(seconds / len(todo), 1),
                "steps_run": r.history[-1]["step"] if r.history else 0,
                "stacked_folds": len(todo)}
        save_checkpoint(folder / f"generic_{target}.eqx", r.predictor, metadata=meta,
                        overwrite=True)
    timing["generic"].extend([seconds / len(todo)] * len(todo))
    say(f"{len(todo)} generic networks trained together in {seconds:.0f} s")


def _describe(value):
    """A config value as the protocol records it. LossWeights at the default force_data=1
    are written as before that field existed, so that earlier folders' fingerprints stay
    valid (force_data=1 computes the same loss)."""
    from jaxmsk._learn.train import LossWeights

    if isinstance(value, LossWeights) and value.force_data == 1.0:
        return (f"LossWeights(eom={value.eom}, consistency={value.consistency}, "
                f"regularisation={value.regularisation})")
    return value if isinstance(value, (int, float, str)) else repr(value)


def _key(seed):
    import jax

    return jax.random.key(seed)


def run_methods(generic, share, test, model, config, key, methods, say, label,
                force_labels=True):
    """Every method on one share, as `_transfer.run_fold` does (same methods, same keys per
    method name), with a given generic network. Returns ({name: metrics}, {name: F_max
    scales}, {name: fit info}, {name: predictor; for the model methods their CalibratedMSK
    or HybridMSK})."""
    import jax

    from jaxmsk._learn.train import evaluate
    from jaxmsk._learn.transfer import (
        METHODS,
        MODEL_METHODS,
        from_scratch,
        personalise,
        run_model_method,
    )

    cache = {}
    keys = dict(zip(METHODS, jax.random.split(key, len(METHODS))))
    results, scales, fits, predictors = {}, {}, {}, {}
    for name in methods:
        lab = f"{label} {name}: "
        t0 = time.perf_counter()
        r = None
        if name in MODEL_METHODS:
            results[name], scales[name], info = run_model_method(
                name, generic, share, test, model, config, keys[name],
                force_labels=force_labels, progress=say, label=lab, cache=cache)
            fits[name] = {k: v for k, v in info.items() if k != "hybrid"}
            predictors[name] = info.get("hybrid", cache.get("calibrated_msk"))
            continue
        if name == "generic":
            pred = generic
        elif name == "pi_transfer":
            r = personalise(generic, share, model, config, keys[name], progress=say, label=lab,
                            force_labels=force_labels)
        elif name == "transfer_no_physics":
            r = personalise(generic, share, model, config, keys[name], physics=False,
                            progress=say, label=lab, force_labels=force_labels)
        elif name == "full_finetune":
            r = personalise(generic, share, model, config, keys[name], trainable="all",
                            progress=say, label=lab, force_labels=force_labels)
        elif name == "target_only":
            r = from_scratch(share, model, config, keys[name], physics=False, progress=say,
                             label=lab, force_labels=force_labels)
        else:  # pi_no_transfer
            r = from_scratch(share, model, config, keys[name], physics=True, progress=say,
                             label=lab, force_labels=force_labels)
        adjustment = None
        if r is not None:
            pred = r.predictor
            fits[name] = {"best_step": r.best_step, "seconds": round(r.seconds, 1),
                          "steps_run": r.history[-1]["step"] if r.history else 0}
            if name in ("pi_transfer", "full_finetune", "pi_no_transfer"):
                adjustment = r.adjustment
                scales[name] = np.exp(np.asarray(adjustment.log_strength)).tolist()
        results[name] = evaluate(pred, test, model, adjustment)
        predictors[name] = pred
        say(f"{lab}angle RMSE {results[name]['angle_rmse']:.4f} rad, force RMSE "
            f"{results[name]['force_rmse']:.3f} N, EoM {results[name]['eom_residual_rms']:.2e}"
            f" ({time.perf_counter() - t0:.0f} s)")
    return results, scales, fits, predictors


def strength_errors(true_scales, scales: dict) -> dict:
    """|log(estimated / true)| of the personalised F_max scales, mean over muscles, and the
    generic model's (scale 1)."""
    t = np.log(np.asarray(true_scales))
    return {m: {"estimated": list(est),
                "abs_log_error": float(np.mean(np.abs(np.log(np.asarray(est)) - t))),
                "abs_log_error_generic": float(np.mean(np.abs(t)))}
            for m, est in scales.items()}


def save_traces(path: Path, test, predictors) -> None:
    """Predictions of every method on the first test trial (for the traces plot)."""
    import jax.numpy as jnp

    from jaxmsk.io._atomic import atomic_path

    trial = test.trials[0]
    nets = [p for p in predictors.values() if hasattr(p, "net")]
    rf = nets[0].net.receptive_field if nets else 1
    arrays = {"t": trial.time()[rf - 1:], "q": trial.q[rf - 1:], "forces": trial.forces[rf - 1:],
              "trial": np.array(trial.name), "force_labels": np.array(trial.force_labels)}
    for m, pred in predictors.items():
        if hasattr(pred, "net"):
            q_hat, f_hat = pred(jnp.asarray(trial.emg))
        else:  # a model method (CalibratedMSK, HybridMSK): simulated over the whole trial
            q_hat, f_hat = (x[rf - 1:] for x in pred.predict(trial))
        arrays[f"q_{m}"] = np.asarray(q_hat)
        arrays[f"forces_{m}"] = np.asarray(f_hat)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def share_tag(fraction: float) -> str:
    return f"{fraction:.4g}"


# ---------------------------------------------------------------------------------------
# Aggregation, tables, plots


def aggregate_shares(folds: list[dict], shares: list[float], methods) -> dict:
    """Mean ± sd over folds, per share and method (`jaxmsk.cli.demo.aggregate` for the
    metrics)."""
    from jaxmsk.cli.demo import aggregate

    out = {}
    for s in shares:
        tag = share_tag(s)
        rows = [f["shares"][tag] for f in folds if tag in f["shares"]]
        if not rows:
            continue
        entry = {"folds": len(rows), "fraction": rows[0]["fraction"],
                 "methods": aggregate([{"methods": r["methods"]} for r in rows])}
        strength = {}
        for m in methods:
            e = [r["strength"][m] for r in rows if m in r["strength"]]
            if not e:
                continue
            pers = np.array([x["abs_log_error"] for x in e])
            gen = np.array([x["abs_log_error_generic"] for x in e])
            sd = (lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            strength[m] = {"abs_log_error": float(pers.mean()), "abs_log_error_sd": sd(pers),
                           "abs_log_error_generic": float(gen.mean()),
                           "abs_log_error_generic_sd": sd(gen)}
        entry["strength"] = strength
        wins = {}
        for m in methods:
            if m == "pi_transfer" or "pi_transfer" not in rows[0]["methods"]:
                continue
            wins[m] = {k: int(sum(r["methods"]["pi_transfer"][k] < r["methods"][m][k]
                                  for r in rows)) for k in ("angle_rmse", "force_rmse")}
        entry["pi_transfer_wins"] = wins
        entry["paired"] = paired_table(rows, methods)
        out[tag] = entry
    return out


PHYSICS_METHODS = ("pi_transfer", "pi_no_transfer", "full_finetune", "calibrated_msk",
                   "pi_hybrid")
BASELINES = ("generic", "transfer_no_physics")


def paired_table(rows: list[dict], methods) -> dict:
    """{physics method: {baseline: {metric: paired_comparison}}} over the folds in `rows`
    (each {"methods": {name: metrics}}), for the angle and force RMSE."""
    from jaxmsk._learn.stats import paired_comparison

    out = {}
    for m in methods:
        if m not in PHYSICS_METHODS or m not in rows[0]["methods"]:
            continue
        for b in BASELINES:
            if b not in rows[0]["methods"]:
                continue
            out.setdefault(m, {})[b] = {
                k: paired_comparison([r["methods"][m][k] for r in rows],
                                     [r["methods"][b][k] for r in rows])
                for k in ("angle_rmse", "force_rmse")}
    return out


def paired_markdown(paired: dict) -> list[str]:
    """The paired comparisons as a table: mean difference [95 % CI], relative, wins, p."""
    if not paired:
        return []
    lines = ["", "Paired over folds (physics-informed method − baseline; negative: the "
             "physics-informed method has the lower error; Wilcoxon signed-rank, two-sided):",
             "", "| method | vs | angle RMSE Δ (rad) [95 % CI] | rel. | wins | p | "
             "force RMSE Δ (N) [95 % CI] | rel. | wins | p |", "|---|---|---|---|---|---|---|---|"
             "---|---|"]
    for m, per in paired.items():
        for b, d in per.items():
            cells = []
            for k in ("angle_rmse", "force_rmse"):
                c = d[k]
                p = "—" if c["wilcoxon_p"] is None else f"{c['wilcoxon_p']:.3f}"
                cells += [f"{c['mean_difference']:+.4f} [{c['ci95'][0]:+.4f}, "
                          f"{c['ci95'][1]:+.4f}]", f"{100 * c['relative_difference']:+.1f} %",
                          f"{c['wins']}/{c['n']}", p]
            lines.append(f"| {m} | {b} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict) -> str:
    c = results["cohort"]
    lines = ["# Physics-informed transfer learning: leave-one-subject-out, share sweep", "",
             f"Synthetic wrist cohort: {c['subjects']} subjects × {c['trials_per_subject']} trials "
             f"× {c['duration_s']:.0f} s, seed {c['seed']}; held-out subjects: "
             f"{', '.join(results['targets'])}. Shares: chunks of {results['chunk_s']} s from "
             f"{results['share_start_s']} s into the trials; test: every trial after that "
             f"(the same test set for every share). Mean ± sd over folds; "
             f"{results['dtype']}, {results['device']}.", ""]
    if results.get("share_labels", "all") != "all":
        lines += ["The methods saw only the joint angles of the target's share, not its muscle "
                  "forces (`--share-labels angle`); the test set's forces score them.", ""]
    for tag, e in results["shares"].items():
        lines += [f"## Share {100 * float(tag):g} % ({e['folds']} fold"
                  f"{'s' if e['folds'] > 1 else ''})", "",
                  "| method | angle RMSE (rad) | force RMSE (N) | angle R² | force R² | "
                  "EoM residual RMS |", "|---|---|---|---|---|---|"]
        for m, r in e["methods"].items():
            lines.append(
                f"| {m} | {r['angle_rmse']:.4f} ± {r['angle_rmse_sd']:.4f} | "
                f"{r['force_rmse']:.3f} ± {r['force_rmse_sd']:.3f} | "
                f"{r['angle_r2']:.3f} ± {r['angle_r2_sd']:.3f} | "
                f"{r['force_r2']:.3f} ± {r['force_r2_sd']:.3f} | "
                f"{r['eom_residual_rms']:.2e} ± {r['eom_residual_rms_sd']:.1e} |")
        if e["strength"]:
            lines += ["", "F_max scales, mean over muscles of |log(estimated / true)| "
                      "(generic: |log true|):", ""]
            for m, d in e["strength"].items():
                lines.append(f"- {m}: {d['abs_log_error']:.3f} ± {d['abs_log_error_sd']:.3f} "
                             f"(generic {d['abs_log_error_generic']:.3f} ± "
                             f"{d['abs_log_error_generic_sd']:.3f})")
        if e["pi_transfer_wins"]:
            lines += ["", "Folds where pi_transfer has the lower error (angle, force): "
                      + "; ".join(f"vs {m} {w['angle_rmse']}/{e['folds']}, "
                                  f"{w['force_rmse']}/{e['folds']}"
                                  for m, w in e["pi_transfer_wins"].items()) + "."]
        lines += paired_markdown(e.get("paired", {}))
        lines.append("")
    t = results["timing"]
    lines += [f"Time: generic training {t['generic_s_mean']:.0f} s per fold, all methods "
              f"{t['share_s_mean']:.0f} s per fold and share (means over the runs that did the "
              f"work; resumed parts are not timed again)."]
    return "\n".join(lines) + "\n"


def plot_errors(path: Path, results: dict, methods) -> str:
    from jaxmsk._learn.transfer import METHODS
    from jaxmsk.cli.report import pyplot, save_figure

    plt = pyplot()
    tags = list(results["shares"])
    x = np.array([100 * float(t) for t in tags])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, k, unit in ((axes[0], "angle_rmse", "rad"), (axes[1], "force_rmse", "N")):
        for m in methods:
            v = [results["shares"][t]["methods"].get(m, {}).get(k, np.nan) for t in tags]
            e = [results["shares"][t]["methods"].get(m, {}).get(k + "_sd", np.nan) for t in tags]
            ax.errorbar(x, v, yerr=e, marker="o", capsize=3, lw=1.5,
                        color=f"C{METHODS.index(m)}", label=m)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set_xlabel("target data share (%)")
        ax.set_ylabel(f"{k.replace('_', ' ')} ({unit})")
    axes[1].legend(fontsize=8)
    n = max(results["shares"][t]["folds"] for t in tags)
    fig.suptitle(f"held-out subjects: error vs target data share (mean ± sd over {n} folds)")
    return save_figure(fig, path, overwrite=True)


def plot_traces(path: Path, trace_files: dict, target: str, methods) -> str:
    from jaxmsk._learn.transfer import METHODS
    from jaxmsk.cli.report import pyplot, save_figure

    plt = pyplot()
    tags = list(trace_files)
    fig, axes = plt.subplots(2, len(tags), figsize=(max(9.0, 5.5 * len(tags)), 6.8), sharex=True,
                             squeeze=False, constrained_layout=True)
    for j, tag in enumerate(tags):
        d = np.load(trace_files[tag])
        muscle = int(np.argmax(np.ptp(d["forces"], axis=0)))
        axes[0, j].plot(d["t"], d["q"][:, 0], "k", lw=2.2, label="true")
        axes[1, j].plot(d["t"], d["forces"][:, muscle], "k", lw=2.2, label="true")
        for m in methods:
            if f"q_{m}" not in d:
                continue
            c = f"C{METHODS.index(m)}"
            axes[0, j].plot(d["t"], d[f"q_{m}"][:, 0], color=c, lw=0.9, label=m)
            axes[1, j].plot(d["t"], d[f"forces_{m}"][:, muscle], color=c, lw=0.9, label=m)
        axes[0, j].set_title(f"share {100 * float(tag):.0f} %: test trial {d['trial']}",
                             fontsize=9)
        axes[1, j].set_xlabel("time from the test part's start (s)")
        if j == 0:
            axes[0, j].set_ylabel("wrist angle (rad)")
        axes[1, j].set_ylabel(f"{d['force_labels'][muscle]} force (N)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center",
               ncol=min(len(labels), 7 if len(tags) > 1 else 4), fontsize=8)
    fig.suptitle(f"held-out subject {target}: predictions vs truth")
    return save_figure(fig, path, overwrite=True)


# ---------------------------------------------------------------------------------------


def parse_hybrid(text: str):
    """`HybridConfig` from 'field=value,...' (values parsed as the field's type)."""
    import dataclasses

    from jaxmsk._learn.hybrid import HybridConfig

    fields = {f.name: f for f in dataclasses.fields(HybridConfig)}
    values = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in fields or not value:
            raise SystemExit(f"run.py: --hybrid {item!r}: use field=value with fields "
                             f"{sorted(fields)}.")
        default = getattr(HybridConfig(), name)
        if isinstance(default, bool):
            values[name] = value.strip().lower() in ("1", "true", "yes")
        else:
            values[name] = type(default)(value.strip())
    return HybridConfig(**values)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.distributed:  # before JAX starts a backend
        from jaxmsk import distributed as dist

        where = dist.initialize()
    import jax

    from jaxmsk import distributed as dist

    main_process = dist.is_main_process()

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    from jaxmsk import models
    from jaxmsk._learn.transfer import METHODS, TransferConfig
    from jaxmsk.cohort import synthetic_cohort

    say = Clock()
    out = Path(args.out)
    shares = [float(s) for s in args.shares.split(",") if s.strip()]
    methods = tuple(METHODS if args.methods is None else
                    [m.strip() for m in args.methods.split(",") if m.strip()])
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"run.py: unknown methods {unknown}; choose from {METHODS}.", file=sys.stderr)
        return 2
    repetitions = QUICK["repetitions"] if args.quick else 2
    overrides = {}
    if args.quick:
        overrides.update({k: QUICK[k] for k in ("generic_steps", "personal_steps", "eval_every",
                                                "patience")})
    if args.generic_steps is not None:
        overrides["generic_steps"] = args.generic_steps
    if args.personal_steps is not None:
        overrides["personal_steps"] = args.personal_steps
    if args.calibration_fit is not None:
        overrides["calibration_fit"] = tuple(s.strip() for s in args.calibration_fit.split(",")
                                             if s.strip())
    if args.hybrid is not None:
        overrides["hybrid"] = parse_hybrid(args.hybrid)
    config = TransferConfig(**overrides)

    # Everything that changes a fold's numbers; a folder holds the runs of one protocol.
    protocol = {"subjects": args.subjects, "repetitions": repetitions, "duration_s": 10.0,
                "seed": args.seed, "x64": bool(args.x64), "chunk_s": args.chunk,
                "share_start_s": args.share_start,
                # v2: validation windows take their sEMG history from before the split.
                "personal_validation": "v2",
                "config": {k: _describe(v) for k, v in config.__dict__.items()
                           # (absent at its default, so earlier folders stay valid)
                           if not (k == "calibration_steps" and v == 20)
                           and not (k == "calibration_fit" and v == ("max_isometric_force",))
                           and not (k == "hybrid" and v is None)}}
    if args.share_labels != "all":  # (absent for 'all', so earlier folders stay valid)
        protocol["share_labels"] = args.share_labels
    if args.label_noise:  # likewise absent when 0
        protocol["label_noise"] = args.label_noise
    fingerprint = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]
    manifest = out / "protocol.json"
    ok = True
    if main_process:  # process 0 checks the folder and writes the manifest; all follow it
        out.mkdir(parents=True, exist_ok=True)
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("fingerprint") != fingerprint:
                print(f"run.py: {out} holds results of another protocol ({manifest}); choose "
                      "another --out or remove it.", file=sys.stderr)
                ok = False
        else:
            write_json(manifest, {"fingerprint": fingerprint, **protocol})
    if not dist.broadcast_flag(ok):
        return 2

    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    say(f"transfer study on {device}, {dtype}; {len(methods)} methods, shares {shares}, "
        f"generic {config.generic_steps} steps, personal {config.personal_steps} steps")
    key = jax.random.key(args.seed)
    k_cohort, k_folds = jax.random.split(key)
    wrist = models.wrist()
    cohort = None
    if args.cohort_cache is not None:
        import jaxmsk
        from jaxmsk.io import load_cohort, save_cohort

        # (jaxmsk's version in the key: a cohort made by other code is not reused silently)
        made = {k: protocol[k] for k in ("subjects", "repetitions", "duration_s", "seed", "x64")}
        made["jaxmsk"] = jaxmsk.__version__
        tag = hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:12]
        cached = Path(args.cohort_cache) / f"cohort_{tag}"
        if cached.is_dir():
            cohort = load_cohort(cached)
            say(f"cohort: loaded from {cached}")
    if cohort is None:
        cohort = synthetic_cohort(wrist, args.subjects, k_cohort, repetitions=repetitions,
                                  duration=protocol["duration_s"], progress=say)
        if args.cohort_cache is not None and main_process:
            Path(args.cohort_cache).mkdir(parents=True, exist_ok=True)
            try:
                save_cohort(cached, cohort)
                say(f"cohort: saved to {cached}")
            except FileExistsError:  # (another run saved the same cohort meanwhile)
                pass
    say("processing sEMG ...")
    dataset = cohort.to_dataset().process()
    n_folds = args.subjects if args.folds is None else args.folds
    if not 1 <= n_folds <= args.subjects or args.subjects < 2:
        print(f"run.py: --folds {n_folds} must be in 1..{args.subjects} (and ≥ 2 subjects).",
              file=sys.stderr)
        return 2
    targets = cohort.subject_ids[:n_folds]
    # This process's folds (all of them in a single process); the fold keys depend on the
    # fold's index only, so a fold's numbers do not depend on which process runs it.
    mine = dist.my_items(list(enumerate(targets)))
    if args.distributed:
        say(f"process {where.process_index + 1}/{where.process_count}: folds "
            f"{', '.join(t for _, t in mine) or '(none)'}")

    from jaxmsk._learn.hybrid import HybridConfig

    hybrid_used = _describe(config.hybrid if config.hybrid is not None else HybridConfig())
    folds, timing = [], {"generic": [], "share": []}
    if args.stack_folds:
        stack_generic(dataset, mine, wrist, config, k_folds, out / "generic", say, timing)
    for i, target in mine:
        fold_path = out / f"fold_{target}.json"
        fold = json.loads(fold_path.read_text()) if fold_path.exists() else None
        if fold is None:
            true = np.asarray(cohort.subjects.max_isometric_force_scale[
                cohort.subject_ids.index(target)]).tolist()
            fold = {"target": target, "fingerprint": fingerprint, "true_strength_scales": true,
                    "shares": {}}
        # A share is done when every method ran; pi_hybrid's results also count only if
        # they were made with this run's HybridConfig (its defaults are not in the
        # fingerprint: a folder made at an earlier default would otherwise mix settings).
        todo = [s for s in shares if share_tag(s) not in fold["shares"]
                or set(methods) - set(fold["shares"][share_tag(s)]["methods"])
                or ("pi_hybrid" in methods
                    and fold["shares"][share_tag(s)].get("hybrid_config") != hybrid_used)]
        if not todo:
            say(f"fold {i + 1}/{n_folds} ({target}): done in an earlier run, skipped")
            folds.append(fold)
            continue
        say(f"fold {i + 1}/{n_folds}: held-out subject {target}")
        k_fold = jax.random.fold_in(k_folds, i)
        k_gen, k_order, k_methods = jax.random.split(k_fold, 3)
        source, target_data = dataset.leave_one_subject_out(target)
        t0 = time.perf_counter()
        generic, gmeta, trained = load_or_train_generic(
            source, wrist, config, k_gen, out / "generic" / f"generic_{target}.eqx", say)
        fold["generic"] = gmeta
        if trained:
            timing["generic"].append(time.perf_counter() - t0)
        order = trial_order(target_data, k_order)
        for s in todo:
            tag = share_tag(s)
            t1 = time.perf_counter()
            share, test, info = make_share(target_data, s, order, args.chunk, args.share_start,
                                           generic.net.receptive_field,
                                           config.validation_fraction)
            if args.label_noise:
                share = noisy_labels(share, args.label_noise,
                                     args.seed * 1000 + 10 * i + round(100 * s))
            lab = info["labels"]
            say(f"{target} share {100 * info['fraction']:.1f} %: {info['chunks']} chunk(s) "
                f"from {', '.join(info['share_trials'])}; {lab['train_labels']} training labels "
                f"({lab['train_labels_in_fade_in']} in the fade-in), {lab['val_labels']} "
                f"validation labels; angle sd {lab['train_angle_sd']:.3f} (train) vs "
                f"{lab['test_angle_sd']:.3f} rad (test)")
            res, scales, fits, preds = run_methods(generic, share, test, wrist, config,
                                                   k_methods, methods, say,
                                                   f"{target} {100 * s:g}%",
                                                   force_labels=args.share_labels == "all")
            save_traces(out / "traces" / f"fold_{target}_share{tag}.npz", test, preds)
            # Methods of an earlier run on this share that this run did not redo are kept.
            prev = fold["shares"].get(tag, {})
            fold["shares"][tag] = {
                **info,
                "methods": {**prev.get("methods", {}), **res},
                "fits": {**prev.get("fits", {}), **fits},
                "strength": {**prev.get("strength", {}),
                             **strength_errors(fold["true_strength_scales"], scales)},
                "seconds": round(prev.get("seconds", 0.0) + time.perf_counter() - t1, 1)}
            if "pi_hybrid" in methods:
                fold["shares"][tag]["hybrid_config"] = hybrid_used
            elif "hybrid_config" in prev:
                fold["shares"][tag]["hybrid_config"] = prev["hybrid_config"]
            timing["share"].append(time.perf_counter() - t1)
            write_json(fold_path, fold)
            say(f"{target} share {tag} saved to {fold_path}")
        fold["seconds"] = round(fold.get("seconds", 0.0) + time.perf_counter() - t0, 1)
        write_json(fold_path, fold)
        folds.append(fold)

    from jaxmsk.io._checkpoint import json_default

    # Every process's folds and timings to every process; process 0 writes the results.
    everyone = dist.gather_objects(json.loads(json.dumps({"folds": folds, "timing": timing},
                                                         default=json_default)))
    by_target = {f["target"]: f for part in everyone for f in part["folds"]}
    folds = [by_target[t] for t in targets]
    timing = {k: [x for part in everyone for x in part["timing"][k]] for k in timing}
    if not main_process:
        return 0
    results = {
        "targets": list(targets), "methods_run": list(methods),
        "shares": aggregate_shares(folds, shares, methods),
        "chunk_s": args.chunk, "share_start_s": args.share_start,
        "share_labels": args.share_labels, "label_noise": args.label_noise,
        "cohort": {"subjects": args.subjects, "trials_per_subject": cohort.n_trials,
                   "duration_s": 10.0, "seed": args.seed, "checks": cohort.metadata["checks"]},
        "config": protocol["config"], "fingerprint": fingerprint,
        "device": device, "dtype": dtype,
        "units": {"angle_rmse": "rad", "force_rmse": "N", "eom_residual_rms": "dimensionless",
                  "abs_log_error": "dimensionless (natural log)"},
        "timing": {"generic_s_mean": float(np.mean(timing["generic"])) if timing["generic"]
                   else float(np.mean([f["generic"]["seconds"] for f in folds])),
                   "share_s_mean": float(np.mean(timing["share"])) if timing["share"]
                   else float(np.mean([s["seconds"] for f in folds
                                       for s in f["shares"].values()])),
                   "total_s_this_run": round(say.elapsed(), 1)},
        "folds": [{k: v for k, v in f.items()} for f in folds],
    }
    files = [out / "results.json", out / "results.md"]
    if not args.no_plots:
        files.append(plot_errors(out / "error_vs_share.png", results, methods))
        last = targets[-1]
        traces = {share_tag(s): out / "traces" / f"fold_{last}_share{share_tag(s)}.npz"
                  for s in shares}
        traces = {k: v for k, v in traces.items() if v.exists()}
        if traces:
            files.append(plot_traces(out / "traces.png", traces, last, methods))
    write_json(out / "results.json", results)
    from jaxmsk.io._atomic import atomic_write_text
    atomic_write_text(out / "results.md", markdown(results), overwrite=True)
    print("\n" + markdown(results))
    say(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
