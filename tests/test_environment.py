"""Repository hygiene: dependency lists in sync, notebooks committed clean, config behaviour."""
import json
import re
from pathlib import Path

import pytest
import yaml

from helpers import config

ROOT = config.REPO_ROOT


def _requirements(*files: str) -> set[str]:
    lines = []
    for name in files:
        lines += (ROOT / name).read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def test_environment_yml_matches_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) - {"-e ."} == _requirements("requirements.txt", "requirements-dev.txt")


def test_facenet_pin_avoids_old_torch_cap():
    assert "facenet-pytorch==2.5.3" in _requirements("requirements.txt")


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
    monkeypatch.setenv("FACES_PROFILE", "demo")
    assert config.profile().demo and config.data_root().name == "demo"
    monkeypatch.setenv("FACES_PROFILE", "full")
    assert not config.profile().demo and config.profile().pick("epochs", 17) == 17
    monkeypatch.setenv("FACES_PROFILE", "huge")
    with pytest.raises(ValueError, match="demo"):
        config.profile()


def test_run_dirs_never_reused(tmp_path):
    first = config.new_run_dir("x", root=tmp_path)
    second = config.new_run_dir("x", root=tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_seed_everything_repeats():
    import torch

    config.seed_everything(3)
    a = torch.rand(3)
    config.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_realdata_missing_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("FACES_REALDATA", str(tmp_path))
    (tmp_path / "att_faces").mkdir()
    assert config.realdata("att_faces") == tmp_path / "att_faces"
    with pytest.raises(FileNotFoundError, match="utkface_dev.*FACES_REALDATA"):
        config.realdata("utkface_dev")
