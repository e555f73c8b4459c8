"""The synthetic demo twin: deterministic, fast, read unchanged by the readers, learnable by a small CNN."""
import hashlib
import importlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import demo
from helpers.datasets import constants as C

MAKE_ALL_LIMIT_S = 120


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> tuple[Path, float]:
    """Every layout written once with seed 0, and the seconds it took."""
    root = tmp_path_factory.mktemp("twin")
    start = time.perf_counter()
    demo.make_all(root)
    return root, time.perf_counter() - start


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _reader(layout: str):
    return importlib.import_module(f"helpers.datasets.{layout}")


def _folder(twin, name: str) -> Path:
    return twin[0] / C.DATASET_DIRS[name]


# ------------------------------------------------------------------------------------------ generation
def test_make_all_is_fast_and_complete(twin, record_property):
    root, seconds = twin
    record_property("make_all_s", round(seconds, 2))
    print(f"make_all: {seconds:.1f} s for {sum(1 for _ in root.rglob('*.jpg'))} images")
    assert seconds < MAKE_ALL_LIMIT_S
    for name, folder in C.DATASET_DIRS.items():
        assert (root / folder / demo.MARKER).is_file(), name
        assert not (root / folder / demo.PARTIAL).exists(), name


def test_same_seed_same_bytes_other_seed_other_bytes(twin, tmp_path):
    first = _hashes(_folder(twin, "adience"))
    again = _hashes(demo.make_adience(tmp_path / "again", seed=0))
    other = _hashes(demo.make_adience(tmp_path / "other", seed=1))
    assert again == first
    assert sum(other.get(k) == v for k, v in first.items()) < len(first) // 10


def test_ensure_writes_once_rewrites_partial_and_spares_foreign_folders(tmp_path, capsys):
    folder = demo.ensure("utkface", tmp_path)
    assert folder == tmp_path / C.DATASET_DIRS["utkface"] and "utkface" in capsys.readouterr().out
    stamp = (folder / demo.MARKER).stat().st_mtime_ns
    assert demo.ensure("utkface", tmp_path) == folder and capsys.readouterr().out == ""
    assert (folder / demo.MARKER).stat().st_mtime_ns == stamp
    (folder / demo.MARKER).unlink()
    (folder / demo.PARTIAL).touch()
    (folder / "stray.jpg").touch()
    demo.ensure("utkface", tmp_path)
    assert (folder / demo.MARKER).is_file() and not (folder / "stray.jpg").exists()
    foreign = tmp_path / "real" / C.DATASET_DIRS["fairface"]
    foreign.mkdir(parents=True)
    (foreign / "fairface_label_train.csv").write_text("file\n")
    with pytest.raises(FileExistsError, match="not a demo twin"):
        demo.ensure("fairface", tmp_path / "real")
    with pytest.raises(ValueError, match="known datasets"):
        demo.ensure("imagenet", tmp_path)


def test_identity_traits_shape_the_face():
    rng = np.random.default_rng(0)
    old = demo.sample_identity(rng, gender="Male", race="Black", age=75)
    child = demo.sample_identity(rng, gender="Female", race="East Asian", age=5)
    assert (old.gender, old.race, old.age) == ("Male", "Black", 75)
    assert old.grey > child.grey == 0 and old.wrinkles > child.wrinkles == 0
    assert child.eye_line > old.eye_line and child.beard == 0
    assert sum(old.skin) < sum(demo.SKIN["Black"][0]) + 1
    img = demo.draw_face(old, rng, size=48)
    assert img.size == (48, 48) and img.mode == "RGB"
    a, b = (np.asarray(demo.draw_face(old, np.random.default_rng(s)), float) for s in (1, 2))
    assert np.abs(a - b).mean() > 5, "two images of one identity should differ in pose, light and background"


@pytest.mark.parametrize("kind", C.FACECOM_DISTORTIONS)
def test_distortions_change_the_image(kind):
    img = demo.draw_face(demo.sample_identity(np.random.default_rng(0)), np.random.default_rng(1))
    out = demo.distort(img, kind, np.random.default_rng(2))
    assert out.size == img.size and np.abs(np.asarray(out, float) - np.asarray(img, float)).mean() > 2


# ---------------------------------------------------------------------------------- readers read the twin
def test_hw2p2_reader(twin):
    hw2p2, root = _reader("hw2p2"), _folder(twin, "hw2p2")
    cls = hw2p2.read_classification(root)
    assert len(cls["train"]) == 24 * 16 and len(cls["dev"]) == 24 * 4 and len(cls["test"]) == 60
    assert cls.classes == sorted(cls["train"]["identity"].unique()) and len(cls.classes) == 24
    assert (cls["train"]["label"] == cls["train"]["identity"].map(cls.classes.index)).all()
    ver = hw2p2.read_verification(root)
    assert len(ver["known"]) == 48 and ver["known"]["identity"].nunique() == 24
    assert len(ver["unknown_dev"]) == len(ver["unknown_test"]) == 40
    assert (ver["unknown_dev"]["identity"] == C.HW2P2_NO_MATCH).sum() == 20
    assert set(ver["unknown_dev"]["identity"]) - {C.HW2P2_NO_MATCH} <= set(cls.classes)
    pairs = hw2p2.read_pairs(root)
    assert len(pairs["val"]) == len(pairs["test"]) == 40 and pairs["val"]["match"].sum() == 20
    for frame in (*cls.splits.values(), *ver.splits.values()):
        assert frame["path"].map(lambda p: Path(p).is_file()).all()
    assert pairs["test"]["path1"].map(lambda p: Path(p).is_file()).all()


def test_cs405_reader(twin):
    data = _reader("cs405").read(_folder(twin, "cs405"))
    assert len(data["train"]) == 24 * 16 and len(data["test"]) == 60 and len(data.classes) == 24
    sample = pd.read_csv(data.files["sample_submission"])
    assert list(sample.columns) == ["image_name", "label"]
    assert set(sample["image_name"]) == set(data["test"]["id"])


def test_fairface_reader(twin):
    data = _reader("fairface").read(_folder(twin, "fairface"))
    assert len(data["train"]) == 600 and len(data["val"]) == 150
    train = data["train"]
    assert set(train["gender"]) == set(C.FAIRFACE_GENDERS) and set(train["race"]) == set(C.FAIRFACE_RACES)
    assert set(train["age"]) <= set(C.FAIRFACE_AGES) and train["age"].nunique() >= 7
    assert (train["race_idx"] == train["race"].map(C.FAIRFACE_RACES.index)).all()


def test_adience_reader_drops_irregular_rows(twin):
    root = _folder(twin, "adience")
    rows = sum(len(pd.read_csv(root / f"fold_{k}_data.txt", sep="\t")) for k in range(C.ADIENCE_FOLDS))
    data = _reader("adience").read(root)
    kept = sum(len(data[f"fold_{k}"]) for k in range(C.ADIENCE_FOLDS))
    assert sum(data.dropped.values()) == 5 + 5 + 5 + 1 and kept == rows - 16
    assert set(data["fold_0"]["gender"]) == set(C.ADIENCE_GENDERS)
    assert set(data["fold_0"]["age"]) <= set(C.ADIENCE_AGES)


@pytest.mark.parametrize("kaggle", [False, True], ids=["torchvision", "kaggle"])
def test_celeba_reader(twin, tmp_path, kaggle):
    root = demo.make_celeba(tmp_path / "celeba", kaggle=True) if kaggle else _folder(twin, "celeba")
    data = _reader("celeba").read(root)
    sizes = [len(data[s]) for s in ("train", "valid", "test")]
    assert min(sizes) > 0 and sizes[0] > sizes[1] + sizes[2]
    train = data["train"]
    assert set(C.CELEBA_ATTRIBUTES) <= set(train.columns) and set(train["Male"]) == {0, 1}
    assert ("identity" in train.columns) != kaggle
    assert train["path"].map(lambda p: Path(p).is_file()).all()


def test_facecom_readers(twin):
    facecom, root = _reader("facecom"), _folder(twin, "facecom")
    task_a = facecom.read_task_a(root)
    assert task_a.classes == ["female", "male"] and len(task_a["train"]) == 160 and len(task_a["val"]) == 40
    task_b = facecom.read_task_b(root)
    assert len(task_b["train"]) == 12 * 3 * 8 and task_b["val"]["identity"].nunique() == 6
    assert set(task_b["train"]["distortion"]) == {"clean", *C.FACECOM_DISTORTIONS}


def test_utkface_reader_counts_the_irregular_name(twin):
    data = _reader("utkface").read(_folder(twin, "utkface"))
    assert len(data["all"]) == 200 and data.dropped == {"irregular name": 1}
    assert set(data["all"]["race_idx"]) == set(range(5))


# ------------------------------------------------------------------------------ a small CNN learns the twin
def _load(paths, size: int = 32) -> torch.Tensor:
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)


def _small_cnn(n_classes: int, width: int) -> nn.Module:
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.MaxPool2d(2))
    return nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(4 * width, n_classes))


def fit(x, y, n_classes: int, epochs: int, seed: int = 0, batch: int = 32, width: int = 16) -> nn.Module:
    """The small CNN trained on (x, y) with AdamW, a one-cycle schedule and horizontal flips."""
    torch.manual_seed(seed)
    model = _small_cnn(n_classes, width)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * -(-len(x) // batch))
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch):
            xb = x[idx]
            xb = torch.where(torch.rand(len(xb), 1, 1, 1) < 0.5, xb.flip(3), xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def identity_data(root: Path):
    """hw2p2 classification twin as tensors: (train x, train y, dev x, dev y, classes)."""
    cls = root / C.HW2P2_CLS
    classes = sorted(p.name for p in (cls / "train").iterdir())
    out = []
    for split in ("train", "dev"):
        files = sorted((cls / split).rglob("*.jpg"))
        out += [_load(files), torch.tensor([classes.index(f.parent.name) for f in files])]
    return (*out, classes)


def gender_data(root: Path):
    """fairface twin as tensors for gender: (train x, train y, val x, val y)."""
    out = []
    for split in ("train", "val"):
        labels = pd.read_csv(root / f"fairface_label_{split}.csv")
        out += [_load(root / f for f in labels["file"]),
                torch.tensor(labels["gender"].map(C.FAIRFACE_GENDERS.index).to_numpy())]
    return out


def test_small_cnn_learns_identities(twin, record_property, one_thread):
    x, y, xv, yv, classes = identity_data(_folder(twin, "hw2p2"))
    start = time.perf_counter()
    acc = accuracy(fit(x, y, len(classes), epochs=25), xv, yv)
    record_property("identity_dev_acc", acc)
    seconds = time.perf_counter() - start
    print(f"identity: dev accuracy {acc:.3f} (chance {1 / len(classes):.3f}) in {seconds:.1f} s")
    assert acc >= 5 / len(classes)


def test_small_cnn_learns_gender(twin, record_property, one_thread):
    x, y, xv, yv = gender_data(_folder(twin, "fairface"))
    start = time.perf_counter()
    acc = accuracy(fit(x, y, 2, epochs=16), xv, yv)
    record_property("gender_val_acc", acc)
    print(f"gender: val accuracy {acc:.3f} in {time.perf_counter() - start:.1f} s")
    assert acc >= 0.8
