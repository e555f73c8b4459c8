"""Grad-CAM panels (helpers.gradcam): a classifier rebuilt from a registry entry's run folder and settings, the
target layer of CNNs and ViTs, the maps themselves, and a clear message for a run folder that is gone."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers import gradcam, recipes
from helpers.classification import build_model
from helpers.models import backbones

pytestmark = pytest.mark.usefixtures("one_thread")


def entry_with_checkpoint(tmp_path, notebook="04_resnet50", variant="improved", dataset="cs405", classes=24) -> dict:
    """What notebooks 03-06 record: the recipe's record as settings and a run folder holding best.pt."""
    recipe = recipes.resolve(notebook, variant)
    model = build_model(recipe, classes)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": model.state_dict(), "ema": None, "epoch": 1}, run_dir / "best.pt")
    return {"notebook": notebook, "model": recipe.model, "time": "now", "run_dir": str(run_dir),
            "settings": {"dataset": dataset, **recipe.record()}}, model


def test_load_classifier_rebuilds_the_recorded_model(tmp_path):
    entry, original = entry_with_checkpoint(tmp_path)
    model = gradcam.load_classifier(entry)
    x = torch.randn(2, 3, 32, 32)
    assert not model.training and torch.allclose(model(x), original.eval()(x))


def test_panel_shows_faces_over_their_maps(tmp_path):
    entry, _ = entry_with_checkpoint(tmp_path)
    figure = gradcam.panel(entry, n=3)
    assert isinstance(figure, plt.Figure) and len([a for a in figure.axes if a.images]) == 6
    titles = [a.get_title() for a in figure.axes]
    assert titles[0].startswith("true ") and titles[3].startswith("pred ") and "%" in titles[3]


def test_target_layer_is_the_last_spatial_feature_map():
    model = backbones.create_model("resnet18", 2).eval()
    layer, reshape = gradcam.target_layer(model, 64)
    assert layer is model.backbone.layer4 and reshape is None  # 2x2 at 64 px
    layer, _ = gradcam.target_layer(model, 32)
    assert layer is model.backbone.layer3  # layer4 is 1x1 at 32 px: the last map with a spatial extent


def test_vit_maps_come_back_on_the_patch_grid():
    model = backbones.create_model("vit_tiny_patch16_224", 2, img_size=32).eval()
    layer, reshape = gradcam.target_layer(model, 32)
    assert layer is model.backbone.blocks[-1].norm1
    assert reshape(torch.zeros(1, 1 + 4, 192)).shape == (1, 192, 2, 2)  # class token dropped, 2x2 patches
    maps = gradcam.heatmaps(model, torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_a_missing_run_folder_is_reported_not_fatal(tmp_path, capsys):
    entry, _ = entry_with_checkpoint(tmp_path)
    gone = {**entry, "run_dir": str(tmp_path / "deleted")}
    with pytest.raises(gradcam.RunMissingError, match="no longer exists"):
        gradcam.load_classifier(gone)
    with pytest.raises(gradcam.RunMissingError, match="recorded no run folder"):
        gradcam.checkpoint_path({**entry, "run_dir": None})
    figures = gradcam.panels({"04_resnet50": gone, "05_other": entry}, n=2)
    assert list(figures) == ["05_other"]
    assert "04_resnet50: no Grad-CAM panel" in capsys.readouterr().out
