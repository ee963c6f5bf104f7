"""Test configuration: float64 for mathematics checks (never set by `import jaxmsk`)."""

import jax

jax.config.update("jax_enable_x64", True)
