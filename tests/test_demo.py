"""The synthetic demo twin: deterministic, fast, read unchanged by the readers, learnable by a small CNN."""
import hashlib
import importlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import demo, face_render
from helpers.datasets import constants as C
from helpers.distortions import DISTORTIONS

TWIN_LIMIT_S = 120


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> tuple[Path, float]:
    """Every layout written once with seed 0 through ``demo.ensure``, and the seconds it took."""
    root = tmp_path_factory.mktemp("twin")
    start = time.perf_counter()
    for name in C.DATASET_DIRS:
        demo.ensure(name, root)
    return root, time.perf_counter() - start


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _reader(layout: str):
    return importlib.import_module(f"helpers.datasets.{layout}")


def _folder(twin, name: str) -> Path:
    return twin[0] / C.DATASET_DIRS[name]


# ------------------------------------------------------------------------------------------ generation
def test_a_writer_for_every_dataset():
    assert set(demo.WRITERS) == set(C.DATASET_DIRS)


def test_twin_is_fast_and_complete(twin, record_property):
    root, seconds = twin
    record_property("twin_s", round(seconds, 2))
    print(f"twin: {seconds:.1f} s for {sum(1 for _ in root.rglob('*.jpg'))} images")
    assert seconds < TWIN_LIMIT_S
    for name, folder in C.DATASET_DIRS.items():
        assert (root / folder / demo.MARKER).is_file(), name
        assert not (root / folder / demo.PARTIAL).exists(), name


@pytest.mark.parametrize("name", ["adience", "facecom"])
def test_same_seed_same_bytes_other_seed_other_bytes(twin, tmp_path, name):
    first = _hashes(_folder(twin, name))
    again = _hashes(demo.WRITERS[name](tmp_path / "again", seed=0))
    other = _hashes(demo.WRITERS[name](tmp_path / "other", seed=1))
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
    old = face_render.sample_identity(rng, gender="Male", race="Black", age=75)
    child = face_render.sample_identity(rng, gender="Female", race="East Asian", age=5)
    assert (old.gender, old.race, old.age) == ("Male", "Black", 75)
    assert old.grey > child.grey == 0 and old.wrinkles > child.wrinkles == 0
    assert child.eye_line > old.eye_line and child.beard == 0
    assert sum(old.skin) < sum(face_render.SKIN["Black"][0]) + 1
    img = face_render.draw_face(old, rng, size=48)
    assert img.size == (48, 48) and img.mode == "RGB"
    a, b = (np.asarray(face_render.draw_face(old, np.random.default_rng(s)), float) for s in (1, 2))
    assert np.abs(a - b).mean() > 5, "two images of one identity should differ in pose, light and background"


# ---------------------------------------------------------------------------------- readers read the twin
def test_hw2p2_reader(twin, caplog):
    hw2p2, root = _reader("hw2p2"), _folder(twin, "hw2p2")
    cls = hw2p2.read_classification(root)
    assert len(cls["train"]) == 24 * 16 and len(cls["dev"]) == 24 * 4 and len(cls["test"]) == 60
    assert cls.classes == sorted(cls["train"]["identity"].unique()) and len(cls.classes) == 24
    assert (cls["train"]["label"] == cls["train"]["identity"].map(cls.classes.index)).all()
    with caplog.at_level(logging.WARNING):
        ver = hw2p2.read_verification(root)
    assert not caplog.records, "the twin's verification_dev.csv should be joined on its image column"
    dev_csv = pd.read_csv(ver.files["verification_dev"])
    files = ver["unknown_dev"]["path"].map(lambda p: Path(p).name)
    assert list(dev_csv.columns) == ["image", "label"] and sorted(dev_csv["image"]) == files.tolist()
    assert (ver["unknown_dev"]["identity"] == files.map(dev_csv.set_index("image")["label"])).all()
    assert (dev_csv["label"] != ver["unknown_dev"]["identity"]).any(), "rows in file order need no join"
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
    train, val = task_b["train"], task_b["val"]
    assert train["identity"].nunique() == 12 and val["identity"].nunique() == 6
    assert not set(train["identity"]) & set(val["identity"])
    assert task_b.classes == sorted(train["identity"].unique())
    for frame in (train, val):
        people = sorted(frame["identity"].unique())
        assert (frame["label"] == frame["identity"].map(people.index)).all()
        counts = frame.groupby(["identity", "distortion"]).size()
        assert len(counts) == len(people) * (1 + len(DISTORTIONS)) and (counts == 3).all()
        assert set(frame["distortion"]) == {"clean", *DISTORTIONS}
        distorted = frame[frame["distortion"] != "clean"]
        assert (distorted["path"].map(lambda p: Path(p).stem.rsplit("_", 1)[-1]) == distorted["distortion"]).all()


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


def match_accuracy(embeddings: torch.Tensor, frame: pd.DataFrame) -> float:
    """Top-1 accuracy of matching each distorted image to the nearest clean image (cosine) of ``frame``."""
    e = nn.functional.normalize(embeddings.flatten(1), dim=1)
    clean = torch.tensor((frame["distortion"] == "clean").to_numpy())
    labels = torch.tensor(frame["label"].to_numpy())
    nearest = (e[~clean] @ e[clean].T).argmax(1)
    return (labels[clean][nearest] == labels[~clean]).float().mean().item()


def test_small_cnn_matches_distorted_faces_of_unseen_people(twin, record_property, one_thread):
    """FACECOM Task B: trained on the train people, the CNN's features match val's distorted images to
    val's clean gallery (people it never saw) far above chance and better than raw pixels do."""
    task_b = _reader("facecom").read_task_b(_folder(twin, "facecom"))
    train, val = task_b["train"], task_b["val"]
    x, y, xv = _load(train["path"]), torch.tensor(train["label"].to_numpy()), _load(val["path"])
    start = time.perf_counter()
    model = fit(x, y, len(task_b.classes), epochs=20)
    with torch.no_grad():
        acc = match_accuracy(model[:-2](xv), val)
    pixels = match_accuracy(xv - xv.mean(0), val)
    record_property("task_b_match_acc", acc)
    print(f"task B: match accuracy {acc:.3f} (raw pixels {pixels:.3f}, chance {1 / val['identity'].nunique():.3f}) "
          f"in {time.perf_counter() - start:.1f} s")
    assert acc >= 0.8 and acc >= pixels + 0.1
