"""plots and eda: figures hold what they were given, headless and without leaking pyplot figures."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from helpers import eda, plots
from helpers.imageio import BadImageError


@pytest.fixture(autouse=True)
def no_leaked_figures():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "helpers must not leave figures open in pyplot"


def solid(color, size=(20, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def shown(fig) -> list[np.ndarray]:
    return [im.get_array() for ax in fig.axes for im in ax.get_images()]


def test_image_grid_accepts_every_kind_and_saves(tmp_path):
    path = tmp_path / "grey.pgm"
    solid(128, mode="L").save(path)
    images = [
        solid((255, 0, 0)),
        torch.full((3, 8, 8), 0.5),
        torch.zeros(3, 8, 8, dtype=torch.uint8),
        path,
        np.ones((5, 5)),
    ]
    fig = plots.image_grid(images, titles=list("abcde"), ncols=3)
    arrays = shown(fig)
    assert len(arrays) == 5 and all(a.shape[-1] == 3 for a in arrays)
    assert tuple(arrays[0][0, 0]) == (255, 0, 0) and arrays[3][0, 0, 0] == 128
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    with pytest.raises(ValueError):
        plots.image_grid([])


def test_preview_grid_shows_original_then_augmentations():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 50, 3), dtype=np.uint8))
    fig = plots.preview_grid(image, "heavy", image_size=32, n=5)
    arrays = shown(fig)
    assert len(arrays) == 6
    assert np.array_equal(arrays[0], np.asarray(image))
    assert all(a.shape == (32, 32, 3) for a in arrays[1:])


def test_bar_counts_top_and_ax():
    counts = pd.Series({"a": 5, "b": 9, "c": 1, "d": 7})
    fig = plots.bar_counts(counts, "ids", top=3)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [9, 7, 5] and fig.axes[0].get_title() == "ids"
    own = plt.figure()
    try:
        ax = own.add_subplot()
        assert plots.bar_counts(counts, ax=ax) is own
        assert len(ax.patches) == 4
    finally:
        plt.close(own)


def test_histogram_counts_every_value():
    values = np.r_[np.arange(100.0), np.nan]
    fig = plots.histogram(values, bins=10, title="ages")
    assert sum(p.get_height() for p in fig.axes[0].patches) == 100


def test_plot_history_panels():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [2.0, 1.0, 0.5],
            "val_loss": [2.1, 1.5, 1.2],
            "train_acc": [0.2, 0.5, 0.8],
            "val_acc": [0.2, 0.4, 0.6],
            "lr": [1e-3, 5e-4, 0],
            "val_f1": [0.1, 0.3, 0.5],
            "time_s": [1, 1, 1],
        }
    )
    fig = plots.plot_history(history, extra=["val_f1"])
    loss, acc, lr = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train_loss", "val_loss"]
    assert list(loss.lines[1].get_ydata()) == [2.1, 1.5, 1.2]
    assert len(acc.lines) == 3 and len(lr.lines) == 1
    train_only = plots.plot_history(history[["epoch", "train_loss", "train_acc"]])
    assert len(train_only.axes[0].lines) == 1 and not train_only.axes[2].lines
    with pytest.raises(KeyError, match="train_loss"):
        plots.plot_history(history.drop(columns="epoch"))


def test_confusion_matrix_matches_sklearn():
    y_true, y_pred = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    fig = plots.confusion_matrix(y_true, y_pred, labels=[0, 1, 2], display_labels=["a", "b", "c"])
    assert np.array_equal(shown(fig)[0], sk_confusion_matrix(y_true, y_pred))
    normed = shown(plots.confusion_matrix(y_true, y_pred, normalize="true"))[0]
    assert np.allclose(normed.sum(axis=1), 1)


def test_pairs_grid():
    pairs = [(solid((255, 0, 0)), solid((0, 0, 255))) for _ in range(3)]
    fig = plots.pairs_grid(pairs, captions=["n1 -> n2 (4)", "n3 -> n4 (3)", "n5 -> n6 (2)"])
    arrays = [im.get_array() for sub in fig.subfigs for ax in sub.axes for im in ax.get_images()]
    assert len(arrays) == 6 and tuple(arrays[1][0, 0]) == (0, 0, 255)
    assert [sub.get_suptitle() for sub in fig.subfigs] == ["n1 -> n2 (4)", "n3 -> n4 (3)", "n5 -> n6 (2)", ""]


def test_images_per_identity_and_class_balance():
    df = pd.DataFrame({"identity": ["a"] * 3 + ["b"] * 1 + ["c"] * 2, "gender": list("mmffmf")})
    counts, stats = eda.images_per_identity(df)
    assert counts.to_dict() == {"a": 3, "c": 2, "b": 1} and stats["mean"] == 2 and stats["min"] == 1
    balance = eda.class_balance(df, "gender")
    assert balance["count"].to_dict() == {"m": 3, "f": 3} and balance["fraction"].sum() == pytest.approx(1)
    with pytest.raises(KeyError, match="identity"):
        eda.class_balance(df, "race")


def test_attribute_balance():
    df = pd.DataFrame({"race": list("WWBBBA"), "gender": list("MFMMFF")})
    table = eda.attribute_balance(df, ["race", "gender"])
    assert table.loc["B", "M"] == 2 and table.loc["All", "All"] == 6
    rows = eda.attribute_balance(df, ["race", "gender"], normalize="index")
    assert np.allclose(rows.drop(columns="All", errors="ignore").sum(axis=1), 1)
    single = eda.attribute_balance(df, "race", normalize=True)
    assert single.iloc[:, 0].sum() == pytest.approx(1)


def test_image_sizes_reads_headers(tmp_path):
    paths = []
    for i, (size, mode) in enumerate([((10, 12), "RGB"), ((30, 20), "L"), ((7, 7), "RGB")]):
        paths.append(tmp_path / f"{i}.png")
        solid(0, size, mode).save(paths[-1])
    sizes = eda.image_sizes(paths)
    assert list(sizes.columns) == ["path", "width", "height", "mode"]
    assert sizes[["width", "height", "mode"]].values.tolist() == [
        [10, 12, "RGB"],
        [30, 20, "L"],
        [7, 7, "RGB"],
    ]
    assert len(eda.image_sizes(paths, sample=2)) == 2
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="bad.jpg"):
        eda.image_sizes([bad])


def test_duplicates_groups_identical_content(tmp_path):
    contents = {
        "a.jpg": b"same bytes",
        "b.jpg": b"same bytes",
        "c.jpg": b"SAME BYTES",
        "d.jpg": b"other",
        "sub/e.jpg": b"same bytes",
    }
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    groups = eda.duplicates(sorted(tmp_path.rglob("*.jpg")))
    assert groups == [[str(tmp_path / n) for n in ("a.jpg", "b.jpg", "sub/e.jpg")]]


def test_channel_stats(tmp_path):
    for name, color in [("r.png", (255, 0, 0)), ("g.png", (0, 255, 51))]:
        solid(color).save(tmp_path / name)
    stats = eda.channel_stats(sorted(tmp_path.glob("*.png")), image_size=8)
    assert stats["mean"] == pytest.approx((0.5, 0.5, 0.1), abs=1e-4)
    assert stats["std"] == pytest.approx((0.5, 0.5, 0.1), abs=1e-4)
    with pytest.raises(ValueError):
        eda.channel_stats([])


def test_preview_grid_on_a_real_face(realdata, tmp_path):
    face = min((realdata / "utkface_dev" / "images").glob("*.jpg"))
    fig = plots.preview_grid(face, "heavy", image_size=112, n=7, ncols=4)
    fig.savefig(tmp_path / "preview.png", dpi=80)
    assert len(shown(fig)) == 8 and (tmp_path / "preview.png").stat().st_size > 20_000
