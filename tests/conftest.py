"""Test configuration: float64 for mathematics checks (never set by `import jaxmsk`)."""

import jax

jax.config.update("jax_enable_x64", True)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_cohort():
    """Wrist, 3 subjects × 4 protocols × 3 s (see helpers.SMALL_COHORT)."""
    from helpers import SMALL_COHORT

    import jaxmsk as msk

    c = SMALL_COHORT
    return msk.cohort.synthetic_cohort(msk.models.wrist(), c["n_subjects"],
                                       jax.random.key(c["seed"]), repetitions=c["repetitions"],
                                       duration=c["duration"])


@pytest.fixture(scope="session")
def processed(small_cohort):
    """The small cohort's processed dataset (sEMG envelopes at 100 Hz)."""
    return small_cohort.to_dataset().process()


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """When a module ends with its worker above 3 GiB resident, drop the compiled
    executables and give the freed heap back to the system. A worker that kept every
    module's XLA code grew to 7 GB over the suite, and two of them beside the subprocess
    tests exhausted a CI machine's memory (XLA aborts when an allocation fails). Clearing
    JAX's caches alone returned 2 % of it (glibc keeps the freed heap); malloc_trim returns
    the rest (measured: 1.72 GB → 0.40 GB after four arm26 compilations)."""
    yield
    import ctypes
    import gc
    import os

    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # (no /proc: clear every time)
        resident = None
    if resident is None or resident > 3 * 2**30:
        jax.clear_caches()
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # (not glibc)
            pass
