"""Hosted runtimes, simulated: Kaggle's read-only inputs and writable working folder, Colab's Drive, and the setup
cell every notebook starts with."""
import builtins
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import config, data, datasets, demo, results, runtime, setup_cell
from helpers.datasets.constants import CS405_SLUG, HW2P2_CLS, HW2P2_PAIRS, HW2P2_VER

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TRAINING = [p for p in NOTEBOOKS if p.name[:2] in {"03", "04", "05", "06", "07", "08", "09", "10"}]


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A fake Kaggle session: inputs under tmp/input (CS 405 and HW2P2 attached, HW2P2 with its top folder
    repeated as an archive mount has it), outputs under tmp/working, the full profile."""
    inputs, working = tmp_path / "input", tmp_path / "working"
    demo.make_cs405(inputs / CS405_SLUG)
    hw2p2 = demo.make_hw2p2(tmp_path / "hw2p2_zip")
    for part in (HW2P2_CLS, HW2P2_VER):
        (inputs / part).mkdir(parents=True)
        (hw2p2 / part).rename(inputs / part / part)
    working.mkdir()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("FACES_KAGGLE_INPUT", str(inputs))
    monkeypatch.setenv("FACES_KAGGLE_WORKING", str(working))
    monkeypatch.setenv("FACES_PROFILE", "full")
    for name in runtime.OUTPUT_ENV.values():
        monkeypatch.delenv(name, raising=False)
    return inputs, working


def test_kaggle_inputs_are_found_first_and_outputs_go_to_working(kaggle):
    inputs, working = kaggle
    assert runtime.host() == "kaggle"
    assert datasets.locate("cs405") == inputs / CS405_SLUG
    assert datasets.locate("hw2p2") == inputs
    hw2p2 = data.load("hw2p2")
    assert len(hw2p2.classes) == 24 and len(hw2p2["test"])
    assert len(data.load("hw2p2_verification")["unknown_dev"])
    assert data.load("cs405")["train"].path.str.startswith(str(inputs)).all()
    for root in (config.runs_dir(), config.submissions_dir(), config.cache_dir(), config.data_root()):
        assert root.is_relative_to(working)


def test_an_attached_dataset_is_recognised_by_its_layout(kaggle, tmp_path):
    inputs, _ = kaggle
    demo.make_fairface(inputs / "my-fairface-copy")
    assert datasets.locate("fairface") == inputs / "my-fairface-copy"
    demo.make_fairface(inputs / "datasets" / "someone" / "fairface-again")  # the nested mount layout
    with pytest.raises(datasets.LayoutError, match="several attached"):
        datasets.locate("fairface")


def test_missing_input_says_where_it_looked(kaggle):
    with pytest.raises(datasets.LayoutError, match="no attached input"):
        datasets.locate("adience")


@pytest.mark.usefixtures("one_thread")
def test_a_training_run_on_kaggle_never_writes_into_the_inputs(kaggle):
    from helpers import classification, recipes

    inputs, working = kaggle
    before = snapshot(inputs)
    recipe = recipes.get("04_resnet50").with_values(model="resnet18", pretrained=False, epochs=1, image_size=32,
                                                    batch_size=32, num_workers=0, progress=False)
    faceset = data.load("cs405")
    model = classification.build_model(recipe, len(faceset.classes))
    result = classification.run("04_resnet50", model, recipe, faceset)
    assert snapshot(inputs) == before
    assert result.run_dir.is_relative_to(working) and result.csv.is_relative_to(working)
    assert (result.run_dir / "best.pt").is_file()


def test_writers_refuse_an_input_folder(kaggle):
    from helpers import align, files

    inputs, _ = kaggle
    paths = data.load("cs405")["train"].path.head(2).tolist()
    with pytest.raises(ValueError, match="read-only"):
        align.align_folder(paths, inputs / "aligned")
    with pytest.raises(ValueError, match="read-only"):
        files.ensure_outside(inputs / CS405_SLUG / "x", runtime.read_only_roots())


def test_drive_keeps_runs_across_sessions(tmp_path, monkeypatch):
    """Colab: DRIVE=True mounts Drive once and puts data, runs and submissions there; a new session (fresh
    environment, Drive still mounted) finds notebook 03's run for notebook 07."""
    mount_point, calls = tmp_path / "drive", []

    def fake_mount(where: str) -> None:
        calls.append(where)
        (Path(where) / "MyDrive").mkdir(parents=True)

    monkeypatch.setenv("FACES_DRIVE_MOUNT", str(mount_point))
    monkeypatch.setenv("FACES_CACHE", str(tmp_path / "local-cache"))
    for name in ("FACES_DATA", "FACES_RUNS", "FACES_SUBMISSIONS"):
        monkeypatch.delenv(name, raising=False)
    config.start(drive=True, mount=fake_mount)
    folder = mount_point / runtime.DRIVE_FOLDER
    assert calls == [str(mount_point)]
    assert (config.data_root(), config.runs_dir(), config.submissions_dir()) == (
        folder / "data", folder / "runs", folder / "submissions")
    assert config.cache_dir() == tmp_path / "local-cache"
    run_dir, _ = config.open_run("03_convnext_from_scratch")
    (run_dir / "stage_1").mkdir()
    (run_dir / "stage_1" / "last.pt").write_bytes(b"checkpoint")
    for name in ("FACES_DATA", "FACES_RUNS", "FACES_SUBMISSIONS"):  # the VM is new: only Drive remains
        monkeypatch.delenv(name)
    config.start(drive=True, mount=fake_mount)
    assert calls == [str(mount_point)]  # mounted already: not mounted again
    assert config.find_run("03_convnext_from_scratch", "latest") == run_dir
    assert run_dir.is_relative_to(folder)


def test_drive_outside_colab_is_a_clear_error():
    with pytest.raises(RuntimeError, match="Colab only"):
        config.start(drive=True)


def run_setup_cell(monkeypatch, tmp_path, url: str, installed: bool, kaggle: bool) -> list[list[str]]:
    """Execute the notebooks' setup cell in a folder without ``../helpers``, with ``helpers`` importable or not,
    recording the commands it runs instead of running them."""
    commands = []
    monkeypatch.chdir(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec(name, *a) if installed or name != "helpers" else None))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    if kaggle:
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    code = setup_cell.source(url).replace("config.start(drive=DRIVE)", "")  # the install part only
    exec(compile(code, "setup-cell", "exec"), {"DRIVE": False, "__builtins__": builtins})  # noqa: S102 - the cell itself
    return commands


def test_setup_cell_installs_nothing_where_helpers_imports(monkeypatch, tmp_path):
    assert run_setup_cell(monkeypatch, tmp_path, setup_cell.repo_url(), installed=True, kaggle=False) == []


def test_setup_cell_stops_on_the_placeholder_url(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="set REPO_URL"):
        run_setup_cell(monkeypatch, tmp_path, "https://github.com/YOUR-ACCOUNT/x.git", installed=False, kaggle=True)


def test_setup_cell_clones_and_installs_the_slim_set(monkeypatch, tmp_path):
    url = "https://github.com/someone/face-notebooks.git"
    commands = run_setup_cell(monkeypatch, tmp_path, url, installed=False, kaggle=True)
    clone, install = commands
    assert clone[:2] == ["git", "clone"] and clone[-2:] == [url, "/kaggle/working/faces"]
    assert install[-2:] == ["-r", "/kaggle/working/faces/requirements-hosted.txt"]
    hosted = (config.REPO_ROOT / "requirements-hosted.txt").read_text()
    assert not {"torch", "torchvision", "ipykernel", "jupyterlab"} & {
        line.split(">")[0].split("=")[0].strip() for line in hosted.splitlines() if line and line[0] != "#"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_parameters_then_the_one_setup_cell(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert setup_cell.setup_cell(notebook) is code[1]
    assert "".join(code[1]["source"]) == setup_cell.source()
    assert "DRIVE = " in "".join(code[0]["source"])
    assert len(notebook["cells"]) <= 30


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.stem)
def test_training_notebooks_expose_the_run_size_knobs(path):
    params = "".join(json.loads(path.read_text())["cells"][1]["source"])
    for knob in ("EPOCHS", "IMAGE_SIZE", "BATCH_SIZE", "LR", "NUM_WORKERS", "RESUME"):
        assert f"\n{knob} = None" in f"\n{params}", f"{path.name} lacks {knob} = None"


def test_partial_data_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACES_PROFILE", "full")
    monkeypatch.setenv("FACES_DATA", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-credentials"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    shutil.rmtree(demo.make_hw2p2(tmp_path / "hw2p2") / HW2P2_PAIRS)  # no pairs layout (an older term)
    table = data.overview(["hw2p2", "hw2p2_pairs", "cs405"])
    assert set(table[table.problem == ""].reader) == {"hw2p2"}
    assert set(table[table.problem != ""].reader) == {"hw2p2_pairs", "cs405"}
    assert data.available("cs405") is None and "cs405: missing" in capsys.readouterr().out
    status = data.download_all(["fairface", "cs405"])
    assert status.status.tolist() == ["missing", "missing"] and status["how to get it"].str.len().min() > 10


def test_results_latest_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FACES_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run that notebook first"):
        config.find_run("03_convnext_from_scratch", "latest")
    with pytest.raises(FileNotFoundError, match="holds no last.pt"):
        config.open_run("03_convnext_from_scratch", tmp_path)
    assert results.latest(["03_convnext_from_scratch"], ["val_acc"]).empty
