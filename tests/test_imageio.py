"""imageio and FaceDataset on a hand-made broken tree: every odd mode becomes RGB, every bad file is named."""
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFile

from helpers import imageio
from helpers.datasets import FaceDataset
from helpers.imageio import BadImageError, is_image_file, list_images, load_rgb, scan, verify_headers

RED = (200, 30, 30)
GOOD = ["a_rgb.jpg", "b_grey.pgm", "c_grey16.pgm", "d_rgba.png", "e_palette.png", "f_palette_t.png",
        "g_cmyk.jpg", "h_la.png", "sub/i_nested.png"]
BAD = {"bad_empty.jpg": "zero_byte", "bad_truncated.jpg": "truncated", "bad_text.jpg": "unreadable"}
JUNK = [".DS_Store", "._a_rgb.jpg", "notes.txt"]


def _noise_jpeg(size: int = 64) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, *RED] + [0] * (256 * 3 - 6))
    image.paste(0, (8, 0, 16, 16))
    return image


@pytest.fixture
def tree(tmp_path) -> Path:
    """One file of each awkward kind met in real face datasets."""
    root = tmp_path / "faces"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (16, 16), RED).save(root / "a_rgb.jpg")
    Image.new("L", (16, 16), 100).save(root / "b_grey.pgm")
    grey16 = np.full((16, 16), 65535, dtype=np.uint16)
    grey16[:, 8:] = 128 * 257
    Image.fromarray(grey16).save(root / "c_grey16.pgm")
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    rgba.paste((*RED, 255), (0, 0, 8, 16))
    rgba.save(root / "d_rgba.png")
    Image.new("RGB", (16, 16), RED).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "e_palette.png")
    _palette_with_transparency().save(root / "f_palette_t.png", transparency=0)
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(root / "g_cmyk.jpg", quality=95)
    Image.new("LA", (16, 16), (100, 255)).save(root / "h_la.png")
    Image.new("RGB", (20, 10), RED).save(root / "sub" / "i_nested.png")
    (root / "bad_empty.jpg").touch()
    (root / "bad_truncated.jpg").write_bytes(_noise_jpeg()[: len(_noise_jpeg()) // 2])
    (root / "bad_text.jpg").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "._a_rgb.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (root / "notes.txt").write_text("readme")
    return root


def test_is_image_file_skips_hidden_and_other_suffixes():
    assert is_image_file("x/a.JPG") and is_image_file("a.pgm") and is_image_file(Path("a.webp"))
    assert not any(is_image_file(name) for name in [".DS_Store", "._a.jpg", "notes.txt", "a.jpg.txt"])


def test_list_images_order_and_recursion(tree):
    top = sorted(name for name in [*GOOD, *BAD] if "/" not in name)
    assert list_images(tree) == [tree / name for name in top] + [tree / "sub" / "i_nested.png"]
    assert list_images(tree, recursive=False) == [tree / name for name in top]


@pytest.mark.parametrize("name", GOOD)
def test_load_rgb_returns_rgb_for_every_mode(tree, name):
    image = load_rgb(tree / name)
    assert image.mode == "RGB"
    assert image.size == ((20, 10) if name.startswith("sub/") else (16, 16))


def test_load_rgb_pixel_values(tree):
    pixel = {name: load_rgb(tree / name).getpixel for name in GOOD}
    assert pixel["b_grey.pgm"]((0, 0)) == (100, 100, 100)
    assert pixel["c_grey16.pgm"]((0, 0)) == (255, 255, 255)  # 16-bit range scaled, not clipped
    assert pixel["c_grey16.pgm"]((12, 0)) == (128, 128, 128)
    assert pixel["d_rgba.png"]((0, 0)) == RED
    assert pixel["d_rgba.png"]((12, 0)) == (255, 255, 255)  # transparent -> white
    assert pixel["f_palette_t.png"]((0, 0)) == RED
    assert pixel["f_palette_t.png"]((12, 0)) == (255, 255, 255)
    assert pixel["e_palette.png"]((0, 0)) == RED
    r, g, b = pixel["g_cmyk.jpg"]((8, 8))
    assert r > 200 and g < 40 and b < 40  # CMYK red stays red
    assert pixel["h_la.png"]((0, 0)) == (100, 100, 100)


@pytest.mark.parametrize(("name", "kind", "words"), [
    ("bad_empty.jpg", "zero_byte", "empty"), ("bad_truncated.jpg", "truncated", "truncated"),
    ("bad_text.jpg", "unreadable", "not an image"), ("missing.jpg", "unreadable", "cannot be read")])
def test_load_rgb_names_file_and_fault(tree, name, kind, words):
    with pytest.raises(BadImageError) as caught:
        load_rgb(tree / name)
    assert isinstance(caught.value, ValueError)
    assert caught.value.kind == kind and name in str(caught.value) and words in str(caught.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_scan_counts_every_category(tree):
    report = scan(tree, progress=False)
    assert report.n_ok == len(GOOD) and report.n_bad == 3
    for name, kind in BAD.items():
        assert getattr(report, kind) == [tree / name]
    assert sorted(p.name for p in report.non_image) == sorted(JUNK)
    expected_modes = Counter(RGB=2, L=1, RGBA=1, P=2, CMYK=1, LA=1)
    expected_modes[Image.open(tree / "c_grey16.pgm").mode] += 1
    assert report.modes == expected_modes
    assert report.sizes == Counter({(16, 16): 8, (20, 10): 1})
    text = str(report)
    assert "9 images ok, 3 bad, 3 non-image" in text and "bad_truncated.jpg" in text and "truncated: 1" in text


def test_scan_without_decode_reads_headers_only(tree):
    report = scan([tree / name for name in [*GOOD, *BAD]], decode=False, progress=False)
    assert report.n_ok == len(GOOD) + 1 and report.truncated == []  # truncation needs a full decode
    assert report.zero_byte == [tree / "bad_empty.jpg"] and report.unreadable == [tree / "bad_text.jpg"]


def test_verify_headers(tree):
    paths = [str(tree / name) for name in [*GOOD, *BAD]]
    ok, bad = verify_headers(paths, progress=False)
    assert sorted(bad) == sorted(str(tree / n) for n in ["bad_empty.jpg", "bad_text.jpg"])
    assert ok == [p for p in paths if p not in bad]
    assert "empty" in bad[str(tree / "bad_empty.jpg")]


def test_verify_headers_remembers_each_file(tree, monkeypatch):
    """A second dataset over the same files opens none of them; a replaced file is checked again."""
    paths = [str(tree / name) for name in [*GOOD, *BAD]]
    verify_headers(paths, progress=False)
    opened = []
    real_open = imageio._open
    monkeypatch.setattr(imageio, "_open", lambda path, decode: opened.append(path) or real_open(path, decode))
    ok, bad = verify_headers(paths, progress=False)
    FaceDataset(pd.DataFrame({"path": [str(tree / name) for name in GOOD]}), target=None)
    assert opened == [] and sorted(bad) == sorted(str(tree / n) for n in ["bad_empty.jpg", "bad_text.jpg"])
    assert len(ok) == len(GOOD) + 1
    Image.new("RGB", (4, 4)).save(tree / "bad_text.jpg", "JPEG")
    _, bad = verify_headers(paths, progress=False)
    assert opened == [str(tree / "bad_text.jpg")] and sorted(bad) == [str(tree / "bad_empty.jpg")]


def test_face_dataset_for_training_drops_bad_headers_with_one_warning(tree, caplog):
    paths = [str(p) for p in list_images(tree)]
    df = pd.DataFrame({"path": paths, "label": range(len(paths))})
    with caplog.at_level(logging.WARNING):
        dataset = FaceDataset(df, train=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "Dropped 2 of 12" in message and "bad_empty.jpg" in message and "bad_text.jpg" in message
    assert len(dataset) == 10 and "bad_truncated.jpg" in dataset.frame["path"].str.cat()
    assert list(dataset.frame.index) == [i for i, p in enumerate(paths) if "bad_empty" not in p
                                         and "bad_text" not in p]


def test_face_dataset_for_training_replaces_a_truncated_item_at_random(tree, caplog):
    paths = [str(p) for p in list_images(tree)]
    dataset = FaceDataset(pd.DataFrame({"path": paths, "label": range(len(paths))}), train=True)
    broken = next(i for i, p in enumerate(dataset.frame["path"]) if "truncated" in p)
    torch.manual_seed(0)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(len(dataset))] + [dataset[broken] for _ in range(11)]
    assert len(items) == len(dataset) + 11 and all(image.mode == "RGB" for image, _ in items)
    own = int(dataset.frame["label"].iloc[broken])
    assert all(int(label) != own for _, label in items[broken:broken + 1] + items[len(dataset):])
    assert dataset.skipped >= 12
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2, "logged at the 1st and 10th skip only"
    assert all("bad_truncated.jpg" in m and "truncated" in m for m in messages) and "10 skip" in messages[1]


def test_face_dataset_for_evaluation_refuses_bad_headers(tree):
    paths = [str(p) for p in list_images(tree)]
    with pytest.raises(BadImageError) as err:
        FaceDataset(pd.DataFrame({"path": paths, "label": range(len(paths))}))
    message = str(err.value)
    assert "2 of 12" in message and "bad_empty.jpg" in message and "bad_text.jpg" in message
    assert "re-download it, or remove its row from the frame" in message and "on_error='blank'" in message


def test_face_dataset_for_evaluation_never_substitutes_a_truncated_image(tree):
    paths = [str(tree / name) for name in [*GOOD, "bad_truncated.jpg"]]
    dataset = FaceDataset(pd.DataFrame({"path": paths}), target=None)
    assert [dataset[i][1].item() for i in range(len(GOOD))] == list(range(len(GOOD)))
    with pytest.raises(BadImageError, match="bad_truncated.jpg: is truncated.*remove its row"):
        dataset[len(GOOD)]


def test_face_dataset_blank_keeps_every_row_of_a_test_set(tree, caplog):
    paths = [str(p) for p in list_images(tree)]
    with caplog.at_level(logging.WARNING):
        dataset = FaceDataset(pd.DataFrame({"path": paths}), transform=np.asarray, target=None, on_error="blank")
    assert len(dataset) == len(paths) and list(dataset.frame["path"]) == paths
    items = [dataset[i] for i in range(len(dataset))]
    assert [int(position) for _, position in items] == list(range(len(paths)))  # each row keeps its own
    bad = {i for i, p in enumerate(paths) if Path(p).name in BAD}
    for i, (image, _) in enumerate(items):
        grey = image.shape == (64, 64, 3) and (image == 128).all()
        assert grey == (i in bad)
    assert sorted(dataset.unreadable) == sorted(paths[i] for i in bad)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all(Path(paths[i]).name in "".join(messages) for i in bad)
    with pytest.raises(ValueError, match="on_error"):
        FaceDataset(pd.DataFrame({"path": paths}), on_error="blank", train=True)


def test_face_dataset_targets(tree):
    good = [str(tree / name) for name in GOOD]
    df = pd.DataFrame({"path": good, "label": range(len(good)), "age": np.linspace(1, 9, len(good)),
                       "male": [True, False] * 4 + [True]}, index=range(100, 100 + len(good)))
    df = pd.concat([df.iloc[:2], pd.DataFrame({"path": [str(tree / "bad_empty.jpg")], "label": [0], "age": [0.0],
                                               "male": [False]}), df.iloc[2:]])
    single = FaceDataset(df, transform=lambda im: torch.tensor(im.size), train=True)
    size, label = single[0]
    assert size.tolist() == [16, 16] and label.dtype == torch.int64 and label.item() == 0
    _, age = FaceDataset(df, target="age", train=True)[1]
    assert age.dtype == torch.float32 and age.item() == pytest.approx(2.0)
    _, both = FaceDataset(df, target=["label", "male"], train=True)[2]
    assert both["label"].item() == 2 and both["male"].dtype == torch.int64 and both["male"].item() == 1
    positions = [FaceDataset(df, target=None, train=True)[i][1].item() for i in range(3)]
    assert positions == [0, 1, 3]  # positions in df, skipping the dropped empty file
    with pytest.raises(TypeError, match="numeric"):
        FaceDataset(df.assign(name="x"), target="name", train=True)
