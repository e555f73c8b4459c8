"""Test session settings: the demo profile, and run/submission outputs kept out of the user's folders."""
import os
from pathlib import Path

import pytest
import torch

from helpers import config

os.environ["FACES_PROFILE"] = "demo"


@pytest.fixture(scope="session", autouse=True)
def _isolated_outputs(tmp_path_factory):
    """Send runs and submissions of the whole session to a temporary folder."""
    out = tmp_path_factory.mktemp("outputs")
    os.environ["FACES_RUNS"] = str(out / "runs")
    os.environ["FACES_SUBMISSIONS"] = str(out / "submissions")
    yield out


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
