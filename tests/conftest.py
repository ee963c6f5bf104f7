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
