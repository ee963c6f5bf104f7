"""Checkpoints of a trained network: `(Predictor, SubjectAdjustment)` with metadata.

The metadata names the network, its sizes and dtype, the model's muscles and coordinates,
the sampling rate, the sEMG units and the training subjects, so `load_predictor` rebuilds
the structure and refuses a mismatching model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..io._checkpoint import load_checkpoint, read_sidecar, save_checkpoint
from .train import Predictor, SubjectAdjustment

GENERIC_FILE = "generic.eqx"
PERSONALISED_FILE = "personalised.eqx"
NETWORKS = ("cnn", "tcn", "gru", "mlp")
META_KEYS = ("network", "n_inputs", "n_outputs", "n_dofs", "dtype", "muscles", "coordinates",
              "fs", "emg_units", "subjects", "segment_length")


def network_builder(name: str) -> Callable:
    """`(n_inputs, n_outputs, key) -> network` for a `--network` name (default sizes)."""
    from .. import nn

    classes = {"cnn": nn.CNN, "tcn": nn.TCN, "gru": nn.GRU, "mlp": nn.MLP}
    if name not in classes:
        raise ValueError(f"--network {name!r}: choose one of {', '.join(NETWORKS)}.")
    cls = classes[name]
    return lambda n_inputs, n_outputs, key: cls(n_inputs, n_outputs, key=key)


def save_predictor(path, predictor: Predictor, adjustment: SubjectAdjustment, metadata: dict,
                   *, overwrite: bool) -> str:
    """`save_checkpoint` of `(predictor, adjustment)`; `metadata` needs `META_KEYS` except
    dtype, which is added."""
    dtype = str(jnp.result_type(*jax.tree.leaves(eqx.filter(predictor, eqx.is_inexact_array))))
    return save_checkpoint(path, (predictor, adjustment), metadata={**metadata, "dtype": dtype},
                           overwrite=overwrite)


def predictor_metadata(path) -> tuple[Path, dict]:
    """(the checkpoint file, its metadata) of a checkpoint written by `jaxmsk train` or
    `personalise` (the file, or a folder holding generic.eqx); ValueError if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / GENERIC_FILE
    if not path.is_file():
        raise ValueError(f"--generic {path}: no such checkpoint; pass the --out folder of "
                         f"`jaxmsk train` (holding {GENERIC_FILE}) or the .eqx file itself.")
    meta = read_sidecar(str(path))["metadata"]
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"--generic {path}: not a checkpoint of `jaxmsk train` (its metadata "
                         f"lacks {missing}).")
    return path, meta


def load_predictor(path, model) -> tuple[Predictor, SubjectAdjustment, dict]:
    """A checkpoint written by `jaxmsk train` or `personalise` (the file, or a folder holding
    generic.eqx), in the current float dtype. ValueError if it does not fit `model`."""
    path, meta = predictor_metadata(path)
    for what, names in (("muscles", model.muscle_names), ("coordinates", model.coordinate_names)):
        if len(meta[what]) != len(names) or (names and tuple(meta[what]) != tuple(names)):
            raise ValueError(f"--generic {path} was trained with a model whose {what} are "
                             f"{meta[what]}, but --model has {list(names)}; pass the model it "
                             "was trained with.")
    net = network_builder(meta["network"])(meta["n_inputs"], meta["n_outputs"], jax.random.key(0))
    like = (Predictor(net, jnp.zeros(meta["n_outputs"]), jnp.ones(meta["n_outputs"]),
                      meta["n_dofs"]), SubjectAdjustment.identity(model.n_muscles))
    stored = np.dtype(meta["dtype"])  # loaded through NumPy: any dtype, whatever x64 is
    like = jax.tree.map(lambda x: np.zeros(x.shape, stored) if eqx.is_inexact_array(x) else x,
                        like)
    (predictor, adjustment), _ = load_checkpoint(path, like)
    here = jnp.result_type(float)
    predictor, adjustment = jax.tree.map(
        lambda x: jnp.asarray(x, here) if isinstance(x, np.ndarray) else x, (predictor, adjustment))
    return predictor, adjustment, meta
