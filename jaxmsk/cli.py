"""The `jaxmsk` command. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _output_folder(command: str, args) -> Path | None:
    """`--out` as a Path, or None (after saying why) if it holds files and --overwrite is
    not given: nothing a user saved is replaced without asking."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"jaxmsk {command}: {out} exists and is not empty; pass --overwrite to replace "
              "the files it writes there, or choose another --out.", file=sys.stderr)
        return None
    return out


def _demo(args) -> int:
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    from ._demo import run_demo

    out = _output_folder("demo", args)
    if out is None:
        return 2
    try:
        run_demo(out=out, n_subjects=args.subjects, folds=args.folds, seed=args.seed,
                 overwrite=args.overwrite)
    except ValueError as e:
        print(f"jaxmsk demo: {e}", file=sys.stderr)
        return 2
    return 0


def _cohort(args) -> int:
    import jax

    # Cohorts are integrated at rtol 1e-6: float64, set here by the application (never by
    # `import jaxmsk`).
    jax.config.update("jax_enable_x64", True)
    from ._cohort_cli import run_cohort

    out = _output_folder("cohort", args)
    if out is None:
        return 2
    try:
        run_cohort(out, model=args.model, subjects=args.subjects, repetitions=args.repetitions,
                   duration=args.duration, fs=args.fs, fs_emg=args.fs_emg, seed=args.seed,
                   overwrite=args.overwrite)
    except ValueError as e:
        print(f"jaxmsk cohort: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxmsk", description="Differentiable, personalised musculoskeletal modelling in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="physics-informed transfer learning on a synthetic wrist cohort (minutes)")
    demo.add_argument("--out", default="jaxmsk-demo",
                      help="folder for results.json, results.md and plots")
    demo.add_argument("--subjects", type=int, default=5, help="subjects in the cohort")
    demo.add_argument("--folds", type=int, default=1,
                      help="held-out subjects (leave-one-subject-out folds) to run")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
    demo.add_argument("--x64", action="store_true", help="run in float64 (default float32)")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing --out")
    demo.set_defaults(func=_demo)
    cohort = sub.add_parser(
        "cohort", help="generate a synthetic cohort (ground truth + raw sEMG), save it and plot "
        "one subject")
    cohort.add_argument("--out", required=True, help="output folder: cohort/, recordings/, "
                        "plots/, summary.md")
    cohort.add_argument("--model", default="wrist", help="wrist, arm26 or a model .json file")
    cohort.add_argument("--subjects", type=int, default=8)
    cohort.add_argument("--repetitions", type=int, default=2, help="trials per protocol")
    cohort.add_argument("--duration", type=float, default=10.0, help="seconds per trial")
    cohort.add_argument("--fs", type=float, default=100.0, help="kinematics/force rate (Hz)")
    cohort.add_argument("--fs-emg", type=float, default=2000.0, help="raw sEMG rate (Hz)")
    cohort.add_argument("--seed", type=int, default=0, help="PRNG seed: same seed, same cohort")
    cohort.add_argument("--overwrite", action="store_true", help="replace files in --out")
    cohort.set_defaults(func=_cohort)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
