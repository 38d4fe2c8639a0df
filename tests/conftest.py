"""Settings the whole test suite shares."""

from hypothesis import HealthCheck, Phase, settings

# The property tests (tests/plugins/*/test_*_properties.py) run the same examples on every
# run and machine: derandomised, no example database, no deadline on a shared 2-core CPU.
# Each file sets its own max_examples on top of this profile.
settings.register_profile(
    "ebmcore", deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ebmcore")
