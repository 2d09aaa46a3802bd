"""Shared fixtures: fresh random inputs on every run, with the seed reported on failure."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # reference.py, torch_reference.py


@pytest.fixture
def seed(request):
    """A fresh seed per test (VFLASH_TEST_SEED replays one); a failing test's report shows it."""
    value = int(os.environ.get("VFLASH_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    request.node.vflash_seed = value
    return value


@pytest.fixture
def rng(seed):
    np = pytest.importorskip("numpy")
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seed = getattr(item, "vflash_seed", None)
    if report.failed and seed is not None:
        report.sections.append(("vflash seed", f"VFLASH_TEST_SEED={seed} replays this test's inputs"))
