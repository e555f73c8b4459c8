"""Repository hygiene: dependency lists in sync and satisfied, notebooks committed clean, config behaviour."""
import json
import random
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from helpers import config, recipes

ROOT = config.REPO_ROOT
HOSTED_RUNTIME = {"torch", "torchvision", "jupyterlab", "ipykernel"}  # what Colab and Kaggle ship themselves
# package -> (floor, why): the first release with what the code uses
FLOORS = {"torch": ("2.3", "engine: torch.amp.GradScaler(device)"),
          "scikit-learn": ("1.4", "metrics: sklearn.metrics.root_mean_squared_error"),
          "pandas": ("2.1", "DataFrame.map")}


def _requirements(*files: str) -> set[str]:
    """The requirement lines of ``files`` (comments dropped), following ``-r other.txt`` includes."""
    found = set()
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith(("-r ", "--requirement ")):
                found |= _requirements(line.split(maxsplit=1)[1])
            elif line:
                found.add(line)
    return found


def _parsed(*files: str) -> dict[str, Requirement]:
    return {(r := Requirement(line)).name.lower(): r for line in _requirements(*files)}


def test_requirements_include_the_hosted_set():
    first = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    assert first.strip() == "-r requirements-hosted.txt"
    hosted = _requirements("requirements-hosted.txt")
    assert hosted and hosted < _requirements("requirements.txt")


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert len(pip_section) == len(set(pip_section))
    assert set(pip_section) - {"-e ."} == _requirements("requirements.txt", "requirements-dev.txt")


def test_hosted_set_leaves_the_runtime_alone():
    """Installing requirements-hosted.txt on Colab/Kaggle must never replace their CUDA torch or Jupyter."""
    hosted = _parsed("requirements-hosted.txt")
    assert not HOSTED_RUNTIME & set(hosted)
    assert HOSTED_RUNTIME <= set(_parsed("requirements.txt"))


@pytest.mark.parametrize("name", sorted(_parsed("requirements-hosted.txt")))
def test_hosted_requirement_is_satisfied_here(name):
    requirement = _parsed("requirements-hosted.txt")[name]
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), f"{requirement}: {installed} here"
    # and it does not hold torch back: what it declares for torch/torchvision admits the installed ones
    # (facenet-pytorch 2.6 pins torch<2.3, hence the 2.5.3 pin)
    for line in metadata.requires(requirement.name) or []:
        dependency = Requirement(line)
        if dependency.name in ("torch", "torchvision") and dependency.marker is None:
            assert dependency.specifier.contains(metadata.version(dependency.name), prereleases=True), line


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_documented_floors(name):
    floor, why = FLOORS[name]
    requirement = _parsed("requirements.txt")[name]
    lower = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    assert lower and min(lower) >= Version(floor), f"{requirement}: {why} needs {name}>={floor}"
    assert requirement.specifier.contains(metadata.version(name), prereleases=True)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_clean(path: Path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} has outputs"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")
    assert re.match(r"\d\d_", path.name)


def test_profile_switch(monkeypatch):
    """The profile picks the data root and each recipe's values; a notebook parameter wins over both."""
    monkeypatch.delenv("FACES_DATA", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setenv("FACES_PROFILE", "demo")
    recipe = recipes.get("04_resnet50")
    assert config.profile().demo and config.data_root() == ROOT / "data" / "demo"
    assert recipes.resolve("04_resnet50").train.epochs == recipe.demo["epochs"] != recipe.train.epochs
    assert recipes.resolve("04_resnet50", epochs=17).train.epochs == 17
    monkeypatch.setenv("FACES_PROFILE", "full")
    assert not config.profile().demo and config.data_root() == ROOT / "data"
    assert recipes.resolve("04_resnet50").train.epochs == recipe.train.epochs
    assert recipes.resolve("04_resnet50", epochs=17).train.epochs == 17
    monkeypatch.setenv("FACES_PROFILE", "huge")
    with pytest.raises(ValueError, match="demo"):
        config.profile()


def test_output_roots_follow_their_variables(monkeypatch, tmp_path):
    for kind, read in (("FACES_DATA", config.data_root), ("FACES_RUNS", config.runs_dir),
                       ("FACES_SUBMISSIONS", config.submissions_dir), ("FACES_CACHE", config.cache_dir)):
        monkeypatch.setenv(kind, str(tmp_path / kind))
        assert read() == tmp_path / kind


def test_run_dirs_never_reused(tmp_path):
    first = config.new_run_dir("x", root=tmp_path)
    second = config.new_run_dir("x", root=tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_start_seeds_python_numpy_and_torch_from_one_seed():
    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    config.start(seed=3)
    first = draws()
    config.seed_everything(3)
    assert draws() == first
    config.start(seed=4)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


def test_realdata_missing_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("FACES_REALDATA", str(tmp_path))
    (tmp_path / "att_faces").mkdir()
    assert config.realdata("att_faces") == tmp_path / "att_faces"
    with pytest.raises(FileNotFoundError, match="utkface_dev.*FACES_REALDATA"):
        config.realdata("utkface_dev")
