"""The `jaxmsk` command. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import argparse

from .report import run_command


def _demo(args) -> int:
    from .demo import run_demo

    return run_command("demo", args, run_demo, n_subjects=args.subjects, folds=args.folds,
                       seed=args.seed, labels=args.labels, overwrite=args.overwrite)


def _cohort(args) -> int:
    import jax

    # Cohorts are integrated at rtol 1e-6: float64, set here by the application (never by
    # `import jaxmsk`).
    jax.config.update("jax_enable_x64", True)
    from .cohort import run_cohort

    return run_command("cohort", args, run_cohort, model=args.model, subjects=args.subjects,
                       repetitions=args.repetitions, duration=args.duration, fs=args.fs,
                       fs_emg=args.fs_emg, seed=args.seed, overwrite=args.overwrite)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _train(args) -> int:
    from .train import run_train

    return run_command("train", args, run_train, data=args.data, model=args.model,
                       subjects=_names(args.subjects), steps=args.steps, seed=args.seed,
                       network=args.network, batch_size=args.batch_size,
                       segment_length=args.segment_length, overwrite=args.overwrite)


def _personalise(args) -> int:
    from .train import run_personalise

    return run_command("personalise", args, run_personalise, data=args.data, subject=args.subject,
                       generic=args.generic, model=args.model, share=args.share, trials=args.trials,
                       labels=args.labels, steps=args.steps, batch_size=args.batch_size,
                       methods=args.methods, seed=args.seed, overwrite=args.overwrite)


def _common(p, out_help: str, out_default: str | None = None) -> None:
    """--out (required unless it has a default), --seed, --x64, --overwrite."""
    p.add_argument("--out", required=out_default is None, default=out_default, help=out_help)
    p.add_argument("--seed", type=int, default=0, help="PRNG seed")
    p.add_argument("--x64", action="store_true", help="run in float64 (default float32)")
    p.add_argument("--overwrite", action="store_true", help="replace files in an existing --out")


_DATA_HELP = ("recordings folder: one folder per subject holding <trial>_emg.sto, "
              "<trial>_kinematics.mot, <trial>_muscle_forces.sto and optionally mvc_emg.sto")
_MODEL_HELP = "wrist, arm26, an OpenSim .osim file (needs opensim) or a model .json file"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxmsk", description="Differentiable, personalised musculoskeletal modelling in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="physics-informed transfer learning on a synthetic wrist cohort (minutes)")
    demo.add_argument("--subjects", type=int, default=5, help="subjects in the cohort")
    demo.add_argument("--folds", type=int, default=1,
                      help="held-out subjects (leave-one-subject-out folds) to run")
    demo.add_argument("--labels", choices=("angle", "all"), default="angle",
                      help="labels the methods may use from the held-out subject's share: "
                           "'angle' (default: joint angles only, as for a real new subject) "
                           "or 'all' (angles and muscle forces)")
    _common(demo, "folder for results.json, results.md and plots", out_default="jaxmsk-demo")
    demo.set_defaults(func=_demo)
    train = sub.add_parser(
        "train", help="train the generic EMG → joint angles + muscle forces network on source "
        "subjects' recordings (data loss + equation of motion as a soft constraint)")
    train.add_argument("--data", required=True, help=_DATA_HELP)
    train.add_argument("--model", default="wrist", help=_MODEL_HELP)
    train.add_argument("--subjects", help="comma-separated subject folders to train on "
                       "(default all; leave out the subjects to personalise later)")
    train.add_argument("--steps", type=int, help="optimiser steps (default 1500)")
    train.add_argument("--network", choices=("cnn", "tcn", "gru", "mlp"), default="cnn",
                       help="network architecture (default cnn, the paper's)")
    train.add_argument("--batch-size", type=int, default=32, help="segments per step")
    train.add_argument("--segment-length", type=int, default=64,
                       help="predictions per training segment (samples)")
    _common(train, "output folder: generic.eqx (+ .json sidecar), results.json, results.md")
    train.set_defaults(func=_train)
    pers = sub.add_parser(
        "personalise", help="personalise a generic network to one held-out subject from a "
        "share of its data, and compare with the baselines on the rest")
    pers.add_argument("--data", required=True, help=_DATA_HELP + " (only --subject is read)")
    pers.add_argument("--subject", required=True, help="the subject folder to personalise to")
    pers.add_argument("--generic", required=True,
                      help="the --out folder of `jaxmsk train` (or its generic.eqx)")
    pers.add_argument("--model", default=None, help=_MODEL_HELP + "; default: the one the "
                      "generic network was trained with (its checkpoint names it)")
    share = pers.add_mutually_exclusive_group()
    share.add_argument("--share", type=float,
                       help="fraction of every trial (its start) to personalise on (default 0.2)")
    share.add_argument("--trials", help="whole trials to personalise on instead: a number "
                       "(chosen at random) or comma-separated trial names, e.g. slow_1,slow_2 "
                       "(test on the others)")
    pers.add_argument("--labels", choices=("all", "angle"), default="all",
                      help="what the methods learn from on the share: 'all' recorded labels "
                      "(joint angles, and muscle forces where files exist) or 'angle' only, as "
                      "for a real subject; forces are scored on the test part wherever files "
                      "exist")
    pers.add_argument("--steps", type=int, help="optimiser steps per method (default 400 for "
                      "the networks, 150 for pi_hybrid)")
    pers.add_argument("--batch-size", type=int, default=32, help="segments per step")
    pers.add_argument("--methods", default="all",
                      help="'all' or a comma-separated subset of pi_transfer, generic, "
                      "target_only, transfer_no_physics, pi_no_transfer, full_finetune, "
                      "calibrated_msk (the EMG-driven model calibrated by identify on the "
                      "share, simulated open loop; minutes on a CPU), pi_hybrid (the "
                      "subject's model driven by network-corrected sEMG, fitted through the "
                      "simulator)")
    _common(pers, "output folder: results.json, results.md, traces.png, personalised.eqx")
    pers.set_defaults(func=_personalise)
    cohort = sub.add_parser(
        "cohort", help="generate a synthetic cohort (ground truth + raw sEMG), save it and plot "
        "one subject")
    cohort.add_argument("--out", required=True, help="output folder: cohort/, recordings/, "
                        "plots/, summary.md")
    cohort.add_argument("--model", default="wrist", help=_MODEL_HELP)
    cohort.add_argument("--subjects", type=int, default=8)
    cohort.add_argument("--repetitions", type=int, default=2, help="trials per protocol")
    cohort.add_argument("--duration", type=float, default=10.0, help="seconds per trial")
    cohort.add_argument("--fs", type=float, default=100.0, help="kinematics/force rate (Hz)")
    cohort.add_argument("--fs-emg", type=float, default=2000.0, help="raw sEMG rate (Hz)")
    cohort.add_argument("--seed", type=int, default=0, help="PRNG seed: same seed, same cohort")
    cohort.add_argument("--overwrite", action="store_true", help="replace files in --out")
    cohort.set_defaults(func=_cohort)
    from .identify import add_parser as add_identify

    add_identify(sub)
    from .moments import add_parser as add_moments

    add_moments(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
