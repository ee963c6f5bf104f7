"""Checkpoints of models and networks: Equinox leaves plus a JSON sidecar.

A checkpoint `ckpt.eqx` is two files:
- `ckpt.eqx`: the tree's array leaves, written by `eqx.tree_serialise_leaves`;
- `ckpt.eqx.json`: the sidecar, with the caller's metadata (step, loss, optimiser settings,
  anything JSON-able), the jaxmsk version, the tree's fingerprint, its leaves (path, shape,
  dtype) and the SHA-256 and size of the leaves file.

Order of writing: the leaves are serialised to a hidden temporary file, hashed, the sidecar is
written (atomically), and only then is the leaves file renamed into place. So the leaves file
appearing signals a complete checkpoint, and a leaves file whose bytes disagree with its
sidecar (a crash halfway through `overwrite=True`) is detected by the hash, both when loading
and by `latest_checkpoint`.

Why the fingerprint is built from key paths, shapes and dtypes rather than from
`str(jax.tree.structure(tree))`: a treedef's text includes the repr of static fields, which for
functions holds a memory address that differs between processes, so the same network would
not match itself after a restart. `eqx.tree_deserialise_leaves` does not check shapes (a
(4, 2) weight loads into a (2, 4) one as long as the bytes are there), so the fingerprint is
what stops a checkpoint loading into a different model or network.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sys

import equinox as eqx
import jax
import numpy as np

from ._atomic import atomic_path, atomic_write_text, check_writable

_FORMAT = "jaxmsk-checkpoint/1"
_SIDECAR = ".json"


def jaxmsk_version() -> str:
    # Read at call time: `jaxmsk/__init__.py` defines __version__ after importing `io`.
    return getattr(sys.modules.get("jaxmsk"), "__version__", "unknown")


def json_default(x):
    """`json.dumps(default=...)`: NumPy and JAX scalars and arrays as Python numbers/lists."""
    if isinstance(x, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    raise TypeError(f"{type(x).__name__} is not JSON-able")


def dumps(obj, what: str) -> str:
    """`obj` as indented JSON; a ValueError naming `what` if it cannot be stored."""
    try:
        return json.dumps(obj, indent=1, default=json_default, allow_nan=True) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} cannot be stored as JSON ({e}); keep it to numbers, strings, "
                         "lists and dicts with string keys.") from None


def _array_like(x) -> bool:
    # ShapeDtypeStruct: `like` may come from `eqx.filter_eval_shape` (no memory, no compute).
    return isinstance(x, (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic, bool, int,
                          float, complex))


def tree_leaves_info(tree) -> list[dict]:
    """Every leaf `eqx.tree_serialise_leaves` stores: key path, shape and dtype."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _array_like(leaf):
            shape = tuple(np.shape(leaf))
            dtype = str(leaf.dtype) if hasattr(leaf, "dtype") else type(leaf).__name__
            out.append({"path": jax.tree_util.keystr(path), "shape": list(shape), "dtype": dtype})
    return out


def _fingerprint(info: list[dict]) -> str:
    text = json.dumps([[d["path"], d["shape"], d["dtype"]] for d in info])
    return hashlib.sha256(text.encode()).hexdigest()


def tree_fingerprint(tree) -> str:
    """SHA-256 of the stored leaves' key paths, shapes and dtypes (see the module docstring)."""
    return _fingerprint(tree_leaves_info(tree))


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path, tree, *, metadata: dict | None = None, overwrite: bool = False) -> str:
    """Save `tree` (a model, network, optimiser state, or a tuple of them) as a checkpoint.

    Args:
        path: the leaves file, e.g. "runs/ckpt_000100.eqx"; the sidecar is `path + ".json"`.
            Its folder must exist.
        tree: any pytree; its JAX/NumPy arrays and Python scalars are stored.
        metadata: JSON-able dict returned by `load_checkpoint` (e.g. {"step": 100,
            "loss": 0.12}); NumPy/JAX scalars are stored as Python numbers. `latest_checkpoint`
            orders checkpoints by `metadata["step"]`.
        overwrite: replace an existing checkpoint (both files). Without it an existing leaves
            file or sidecar raises `FileExistsError` and nothing is written.

    Returns the path of the leaves file.
    """
    path = os.fspath(path)
    sidecar = path + _SIDECAR
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise ValueError("save_checkpoint: metadata must be a dict, got "
                         f"{type(metadata).__name__}.")
    check_writable(path, overwrite=overwrite, what="save_checkpoint")
    check_writable(sidecar, overwrite=overwrite, what="save_checkpoint (sidecar)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_checkpoint: folder {folder} does not exist; create it "
                                "first.")
    info = tree_leaves_info(tree)
    record = {"format": _FORMAT, "jaxmsk_version": jaxmsk_version(),
              "fingerprint": _fingerprint(info), "metadata": metadata, "leaves": info}
    dumps(record, "save_checkpoint: metadata")  # fail before writing anything
    with atomic_path(path, overwrite=overwrite, what="save_checkpoint") as tmp:
        eqx.tree_serialise_leaves(tmp, tree)
        record["file_sha256"] = _file_sha256(tmp)
        record["file_bytes"] = os.path.getsize(tmp)
        atomic_write_text(sidecar, dumps(record, "save_checkpoint: metadata"),
                          overwrite=overwrite, what="save_checkpoint (sidecar)")
    return path


def read_sidecar(path: str) -> dict:
    sidecar = path + _SIDECAR
    if not os.path.exists(sidecar):
        raise ValueError(f"checkpoint {path} has no sidecar {sidecar}: it was not saved by "
                         "jaxmsk.io.save_checkpoint (load it with eqx.tree_deserialise_leaves) "
                         "or its sidecar was deleted.")
    try:
        with open(sidecar, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint sidecar {sidecar} is unreadable ({e}).") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        got = record.get("format") if isinstance(record, dict) else None
        raise ValueError(f"checkpoint sidecar {sidecar} has format {got!r}, expected {_FORMAT!r}"
                         " (not a jaxmsk checkpoint, or one from a newer jaxmsk).")
    for key in ("fingerprint", "leaves", "metadata", "file_sha256", "file_bytes"):
        if key not in record:
            raise ValueError(f"checkpoint sidecar {sidecar} lacks {key!r}; it is damaged.")
    return record


def _structure_diff(stored: list[dict], expected: list[dict], limit: int = 5) -> list[str]:
    """Lines describing leaves whose path, shape or dtype differ (first `limit`)."""
    lines = []
    if [d["path"] for d in stored] == [d["path"] for d in expected]:
        for s, e in zip(stored, expected):
            if s != e:
                lines.append(f"  {s['path']}: stored {tuple(s['shape'])} {s['dtype']}, "
                             f"expected {tuple(e['shape'])} {e['dtype']}")
    else:
        by_path = {d["path"]: d for d in stored}
        wanted = {d["path"]: d for d in expected}
        for p, e in wanted.items():
            s = by_path.get(p)
            if s is None:
                lines.append(f"  {p}: not in the checkpoint, expected {tuple(e['shape'])} "
                             f"{e['dtype']}")
            elif s != e:
                lines.append(f"  {p}: stored {tuple(s['shape'])} {s['dtype']}, expected "
                             f"{tuple(e['shape'])} {e['dtype']}")
        for p, s in by_path.items():
            if p not in wanted:
                lines.append(f"  {p}: stored {tuple(s['shape'])} {s['dtype']}, not in `like`")
        if not lines:
            lines.append("  the same leaves in a different order")
    if len(stored) != len(expected):
        lines.insert(0, f"  {len(stored)} leaves stored, {len(expected)} expected")
    n = len(lines)
    return lines[:limit] + ([f"  ... and {n - limit} more"] if n > limit else [])


def load_checkpoint(path, like):
    """Load a checkpoint saved by `save_checkpoint` into the structure of `like`.

    Args:
        path: the leaves file.
        like: a pytree of the same structure (e.g. a freshly initialised network, or
            `eqx.filter_eval_shape` of its constructor); non-array leaves come from it.

    Returns `(tree, metadata)`, metadata being the dict given to `save_checkpoint` (through
    JSON: tuples come back as lists).

    Raises `FileNotFoundError` if `path` is missing, and `ValueError` if the sidecar is missing
    or damaged, the leaves file does not match its sidecar (interrupted write, corruption), or
    `like` has a different structure from the saved tree (lists the differing leaves).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: {path} does not exist.")
    record = read_sidecar(path)
    expected = tree_leaves_info(like)
    if _fingerprint(expected) != record["fingerprint"]:
        diff = "\n".join(_structure_diff(record["leaves"], expected))
        raise ValueError(f"load_checkpoint: {path} was saved from a different model/network "
                         f"structure than `like`; leaves that differ:\n{diff}\nBuild `like` "
                         "with the same configuration (sizes, dtype, x64 setting) as the saved "
                         "tree.")
    if os.path.getsize(path) != record["file_bytes"] or _file_sha256(path) != record["file_sha256"]:
        raise ValueError(f"load_checkpoint: {path} does not match its sidecar {path + _SIDECAR} "
                         "(an interrupted overwrite, or the file was corrupted or replaced); "
                         "use an earlier checkpoint.")
    tree = eqx.tree_deserialise_leaves(path, like)
    return tree, record["metadata"]


def _step(record: dict) -> float:
    metadata = record.get("metadata")
    step = metadata.get("step") if isinstance(metadata, dict) else None
    if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step):
        return float(step)
    return -math.inf


def latest_checkpoint(folder, pattern: str = "*.eqx") -> str | None:
    """The newest complete checkpoint in `folder`, or None (also if `folder` does not exist).

    Newest means the highest `metadata["step"]`, then the latest modification time
    (checkpoints without a step come before all with one). Complete means the leaves file has
    a valid sidecar and its bytes match the sidecar's SHA-256; incomplete or damaged ones are
    skipped, so training resumes from the last checkpoint that was fully written.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return None
    candidates = []
    for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
        if not os.path.isfile(path):
            continue
        try:
            record = read_sidecar(path)
            mtime = os.path.getmtime(path)
        except (ValueError, OSError):
            continue
        candidates.append((_step(record), mtime, path, record))
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    for _, _, path, record in candidates:
        try:
            if (os.path.getsize(path) == record["file_bytes"]
                    and _file_sha256(path) == record["file_sha256"]):
                return path
        except OSError:
            continue
    return None


__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "tree_fingerprint"]
