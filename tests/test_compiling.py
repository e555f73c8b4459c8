"""helpers.compiling: when ``TrainConfig.compile="auto"`` compiles (the compiled engine itself: test_engine)."""
import importlib.util
import json
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import compiling, engine
from helpers.compiling import BREAK_EVEN_IMAGES, MARGIN, resolve_compile

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
LONG = MARGIN * BREAK_EVEN_IMAGES  # the shortest run "auto" compiles


@pytest.fixture
def gpu(monkeypatch):
    """A pretend GPU of the given compute capability, with Triton installed."""
    def make(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(compiling.importlib.util, "find_spec",
                            lambda name: object() if name == "triton" else importlib.util.find_spec(name))
    return make


def test_auto_compiles_long_runs_on_triton_gpus_only(gpu):
    gpu((9, 0))  # H100
    assert resolve_compile("auto", CUDA, LONG)[0] is True
    assert resolve_compile("auto", CUDA, LONG - 1)[0] is False  # would not pay back twice over
    assert resolve_compile("auto", CUDA, None)[0] is False  # length unknown
    assert resolve_compile("auto", CPU, 10 * LONG)[0] is False  # slower compiled on CPU
    gpu((7, 5))  # T4: Triton's range
    on, why = resolve_compile("auto", CUDA, 50 * 140_000)  # notebook 03's 50 epochs of HW2P2
    assert on and "7,000,000 images" in why
    gpu((6, 0))  # P100: too old for Triton
    on, why = resolve_compile("auto", CUDA, 10 * LONG)
    assert not on and why == "auto: off, compute capability 6.0 is below Triton's 7.0"


def test_auto_stays_eager_without_triton(gpu, monkeypatch):
    gpu((9, 0))
    monkeypatch.setattr(compiling.importlib.util, "find_spec", lambda name: None)
    assert resolve_compile("auto", CUDA, 10 * LONG) == (False, "auto: off, Triton is not installed")


def test_explicit_settings_and_errors(gpu, monkeypatch):
    def no_cuda(device=None):
        raise AssertionError("compile=False must not touch CUDA")
    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    assert resolve_compile(False, CUDA, 10 * LONG) == (False, "set explicitly")
    gpu((8, 0))
    assert resolve_compile(True, CPU, 1)[0] is True  # a user's choice is kept, even where it does not pay
    gpu((6, 0))
    with pytest.raises(ValueError, match="COMPILE = False"):
        resolve_compile(True, CUDA, LONG)
    for wrong in ("yes", 1):
        with pytest.raises(ValueError, match="choose one of"):
            engine.TrainConfig(compile=wrong)
        with pytest.raises(ValueError, match="choose one of"):
            resolve_compile(wrong, CUDA, LONG)


def test_fit_counts_the_run_and_records_the_choice(tmp_path, monkeypatch):
    """fit asks with every image of the run (epochs x batches x batch size; a resumed run: what is left) and
    writes the answer down."""
    asked = []
    monkeypatch.setattr(engine, "resolve_compile", lambda *args: asked.append(args) or (False, "checked"))
    data = TensorDataset(torch.randn(100, 4), torch.arange(100) % 2)
    train = DataLoader(data, batch_size=16, shuffle=True, drop_last=True, generator=torch.Generator())
    cfg = engine.TrainConfig(epochs=3, compile="auto", progress=False, tensorboard=False)
    engine.fit(nn.Linear(4, 2), train, None, cfg, tmp_path)
    assert asked == [("auto", CPU, 3 * 6 * 16)]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["compiled"] is False and saved["compile_reason"] == "checked"
    engine.fit(nn.Linear(4, 2), train, None, replace(cfg, epochs=5), tmp_path,
               resume=True)
    assert asked[1] == ("auto", CPU, 2 * 6 * 16)
