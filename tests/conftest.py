"""Test session settings: the demo profile, every output root (data, cache, runs, submissions) kept out of the
checkout and the user's folders, and ``--runslow`` for the tests marked ``slow``."""
import os
from pathlib import Path

import pytest
import torch

from helpers import config

os.environ["FACES_PROFILE"] = "demo"
OUTPUT_ROOTS = {"FACES_DATA": "data", "FACES_CACHE": "cache", "FACES_RUNS": "runs",
                "FACES_SUBMISSIONS": "submissions"}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (minutes of CPU)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: needs --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _isolated_outputs(tmp_path_factory):
    """Send data (the demo twin, written there on first use), caches, runs and submissions of the whole
    session to a temporary folder, so that no test writes into the checkout."""
    out = tmp_path_factory.mktemp("outputs")
    before = {name: os.environ.get(name) for name in OUTPUT_ROOTS}
    for name, folder in OUTPUT_ROOTS.items():
        os.environ[name] = str(out / folder)
    yield out
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata`` beside the checkout; skips the test when it is absent."""
    try:
        return config.realdata()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for tiny models: faster, and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
