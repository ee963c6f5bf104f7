"""Networks for EMG → muscle forces + joint angles (Zhang et al. 2022).

Every network is an `EMGRegressor`: a `features` extractor and a per-step `head`, mapping
`(time, n_inputs)` EMG to `(time - receptive_field + 1, n_outputs)`. `head_filter` /
`features_filter` give the filter specs for head-only fine-tuning (transfer learning).

`NNXRegressor` and `NNXConvNet` (the Flax NNX adapter) are loaded on first access: importing
`flax.nnx` takes about 2 s, which users of the equinox networks should not pay.
"""

from ._base import EMGRegressor as EMGRegressor
from ._base import count_parameters as count_parameters
from ._base import features_filter as features_filter
from ._base import head_filter as head_filter
from ._cnn import CNN as CNN
from ._cnn import MLP as MLP
from ._cnn import TCN as TCN
from ._recurrent import GRU as GRU

_LAZY = {"NNXRegressor", "NNXConvNet"}


def __getattr__(name):
    if name in _LAZY:
        from . import _nnx

        return getattr(_nnx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY)


__all__ = [
    "EMGRegressor", "CNN", "TCN", "GRU", "MLP", "NNXRegressor", "NNXConvNet",
    "head_filter", "features_filter", "count_parameters",
]
