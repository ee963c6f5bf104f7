"""Built-in models and their storage format.

For now this holds the JSON model format (every field of a `Model`, arrays as nested lists,
written atomically) that the built-in `arm26()` and `wrist()` models will be stored in; those
models are not on main yet (see issue #3's notes).
"""

from __future__ import annotations

from ._serialize import load_model_json as load_model_json
from ._serialize import model_from_json as model_from_json
from ._serialize import model_to_json as model_to_json
from ._serialize import save_model_json as save_model_json
