"""The `jaxmsk` command. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args) -> int:
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    from ._demo import run_demo

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"jaxmsk demo: {out} exists and is not empty; pass --overwrite to replace its "
              "report files or choose another --out.", file=sys.stderr)
        return 2
    run_demo(out=out, n_subjects=args.subjects)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxmsk", description="Differentiable, personalised musculoskeletal modelling in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate the five wrist muscles and print a report")
    demo.add_argument("--out", default="jaxmsk-demo", help="folder for report.md and results.json")
    demo.add_argument("--subjects", type=int, default=64, help="strength-scaled subjects to vmap over")
    demo.add_argument("--x64", action="store_true", help="run in float64 (default float32)")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing --out")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
