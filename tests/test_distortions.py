"""FACECOM's distortions: shape/determinism, the direction of each effect, the augmentation, the folder writer."""
import hashlib
import pickle
import random

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from helpers.distortions import DISTORTIONS, RandomDistortion, distort, distort_folder


def _face(size: int = 64, seed: int = 0) -> Image.Image:
    """A smooth gradient with fine texture, a skin-coloured oval, two eyes and a mouth."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([90 + 80 * x, 70 + 60 * y, 110 - 40 * x * y], -1)
    base += np.random.default_rng(seed).normal(0, 6, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d, s = ImageDraw.Draw(img), size / 64
    d.ellipse([16 * s, 10 * s, 48 * s, 54 * s], fill=(205, 160, 130))
    d.ellipse([23 * s, 24 * s, 29 * s, 29 * s], fill=(40, 30, 30))
    d.ellipse([35 * s, 24 * s, 41 * s, 29 * s], fill=(40, 30, 30))
    d.line([26 * s, 43 * s, 38 * s, 43 * s], fill=(120, 40, 50), width=max(1, round(2 * s)))
    return img


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), np.float64)


def _laplacian_var(img: Image.Image) -> float:
    """High-frequency energy: variance of the 4-neighbour Laplacian."""
    g = _grey(img)
    return float((g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]).var())


def _gradients(img: Image.Image) -> tuple[float, float]:
    """Mean absolute horizontal and vertical differences (near-vertical streaks raise the first)."""
    g = _grey(img)
    return float(np.abs(np.diff(g, axis=1)).mean()), float(np.abs(np.diff(g, axis=0)).mean())


def _clipped(img: Image.Image) -> float:
    """Share of washed-out pixels (a channel at 250 or more)."""
    return float((np.asarray(img) >= 250).any(-1).mean())


@pytest.fixture(scope="module", params=[64, 250])
def face(request) -> Image.Image:
    return _face(request.param)


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_kind_keeps_size_and_mode_and_changes_the_image(face, kind):
    out = distort(face, kind, seed=0)
    assert out.mode == "RGB" and out.size == face.size
    assert not np.array_equal(np.asarray(out), np.asarray(face))


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_seeded_and_private_randomness(kind):
    img = _face()
    np_state, py_state = np.random.get_state(), random.getstate()
    first, again, other = (np.asarray(distort(img, kind, s)) for s in (3, 3, 4))
    from_rng = [np.asarray(distort(img, kind, np.random.default_rng(7))) for _ in range(2)]
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(*from_rng)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="blurred.*sunny"):
        distort(_face(), "overexposed", 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_distortion_goes_the_right_way(face, seed):
    mean, std, lap = _grey(face).mean(), _grey(face).std(), _laplacian_var(face)
    out = {kind: distort(face, kind, seed) for kind in DISTORTIONS}
    assert _grey(out["lowlight"]).mean() < 0.4 * mean
    assert _grey(out["sunny"]).mean() > mean + 50 and _clipped(out["sunny"]) > _clipped(face) + 0.15
    fog = _grey(out["foggy"])
    assert fog.std() < 0.6 * std and mean + 30 < fog.mean() < 235 and _clipped(out["foggy"]) < 0.01  # light grey
    for kind in ("blurred", "resized", "noisy"):  # tone kept: not a haze or an exposure change
        assert abs(_grey(out[kind]).mean() - mean) < 5 and _grey(out[kind]).std() > 0.7 * std
    assert _laplacian_var(out["blurred"]) < 0.2 * lap
    assert _laplacian_var(out["resized"]) < 0.3 * lap
    (dx, dy), (noise_dx, noise_dy), (rain_dx, rain_dy) = map(_gradients, (face, out["noisy"], out["rainy"]))
    assert _laplacian_var(out["noisy"]) > 2.5 * lap and abs(noise_dx / noise_dy - dx / dy) < 0.1  # isotropic
    assert rain_dx > 3 * dx and rain_dx / rain_dy > 1.3 * dx / dy  # thin near-vertical streaks


def test_random_distortion_identity_always_and_reproducible():
    img = _face()
    assert RandomDistortion(p=0)(img) is img
    always = RandomDistortion(p=1)
    torch.manual_seed(0)
    first = [np.asarray(always(img)) for _ in range(6)]
    torch.manual_seed(0)
    again = [np.asarray(always(img)) for _ in range(6)]
    assert all(not np.array_equal(out, np.asarray(img)) for out in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_random_distortion_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown"):
        RandomDistortion(kinds=["blur"])
    with pytest.raises(ValueError, match="p must"):
        RandomDistortion(p=1.5)


class _Faces(Dataset):
    def __init__(self, transform):
        self.transform = transform

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(_face(seed=i))


def test_random_distortion_pickles_and_runs_in_loader_workers():
    aug = pickle.loads(pickle.dumps(RandomDistortion(p=1, kinds=("foggy", "noisy"))))
    assert aug == RandomDistortion(p=1, kinds=["foggy", "noisy"])
    pipeline = v2.Compose([aug, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def batches():
        torch.manual_seed(0)
        return torch.cat(list(DataLoader(_Faces(pipeline), batch_size=2, num_workers=1)))

    first = batches()
    assert first.shape == (4, 3, 64, 64) and torch.equal(first, batches())


# ------------------------------------------------------------------------------------------ folders
def _digest(paths) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def sources(tmp_path) -> pd.DataFrame:
    """Three faces of two identities in ``src/<identity>/``, one of them a PNG."""
    rows = []
    for i, (identity, name) in enumerate([("ann", "a1.jpg"), ("ann", "a2.png"), ("bob", "b1.jpg")]):
        path = tmp_path / "src" / identity / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _face(seed=i).save(path)
        rows.append((str(path), identity))
    return pd.DataFrame(rows, columns=["path", "identity"])


def test_distort_folder_writes_task_b_layout(sources, tmp_path):
    before = _digest((tmp_path / "src").rglob("*.*"))
    out = tmp_path / "out"
    frame = distort_folder(sources, out, progress=False)
    assert list(frame.columns) == ["path", "identity", "distortion"] and len(frame) == 3 * 8
    assert frame["distortion"].value_counts().to_dict() == {"clean": 3, **{k: 3 for k in DISTORTIONS}}
    assert (out / ".complete").is_file()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(
        [f"{i}/{s}.jpg" for i, s in [("ann", "a1"), ("ann", "a2"), ("bob", "b1")]]
        + [f"{i}/distortion/{s}_{k}.jpg" for i, s in [("ann", "a1"), ("ann", "a2"), ("bob", "b1")]
           for k in DISTORTIONS])
    for path in frame["path"]:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == (64, 64)
    assert (out / "ann" / "a1.jpg").read_bytes() == (tmp_path / "src" / "ann" / "a1.jpg").read_bytes()
    assert _digest((tmp_path / "src").rglob("*.*")) == before

    reversed_out = tmp_path / "reversed"
    distort_folder(sources.iloc[::-1], reversed_out, kinds=["rainy"], progress=False)
    assert (reversed_out / "bob/distortion/b1_rainy.jpg").read_bytes() == (
        out / "bob/distortion/b1_rainy.jpg").read_bytes()


@pytest.mark.parametrize("inside", ["src", "src/new", "src/ann/new"])
def test_distort_folder_refuses_the_source_tree(sources, tmp_path, inside):
    with pytest.raises(ValueError, match="source images' folder tree") as err:
        distort_folder(sources, tmp_path / inside, progress=False)
    assert str(tmp_path / "src") in str(err.value) and str(tmp_path / inside) in str(err.value)
    assert not (tmp_path / "src" / "new").exists() and not (tmp_path / "src" / "ann" / "new").exists()


def test_distort_folder_refuses_a_used_folder(sources, tmp_path):
    (tmp_path / "empty").mkdir()
    distort_folder(sources.iloc[:1], tmp_path / "empty", kinds=["noisy"], progress=False)
    with pytest.raises(FileExistsError, match="finished.*pick a new folder or delete"):
        distort_folder(sources, tmp_path / "empty", progress=False)
    (tmp_path / "half" / "ann").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="interrupted"):
        distort_folder(sources, tmp_path / "half", progress=False)
