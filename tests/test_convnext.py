"""The hand-written ConvNeXt against timm's (randomly initialised, never downloaded), and notebook 03's
model."""
import pytest
import timm
import torch
from torch import nn

from helpers import classification, config, recipes
from helpers.models import convnext

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_timm_convnext_tiny():
    ours = n_params(convnext.create("convnext_tiny", num_classes=7000))
    theirs = n_params(timm.create_model("convnext_tiny", num_classes=7000, pretrained=False))
    assert abs(ours - theirs) / theirs < 0.005
    assert ours == pytest.approx(33.19e6, rel=0.005)  # the CMU report's "33.19M total parameters"


@pytest.mark.parametrize("name", ["convnext_atto", "convnext_tiny"])
def test_timm_weights_load_through_the_mapping_and_give_the_same_outputs(name):
    torch.manual_seed(0)
    theirs = timm.create_model(name, num_classes=10, pretrained=False).eval()
    with torch.no_grad():  # move every weight off its init (layer scale 1e-6 would hide a wrong mapping)
        for param in theirs.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ours = convnext.create(name, num_classes=10).eval()
    result = convnext.load_timm_state_dict(ours, theirs.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        assert torch.allclose(ours(x), expected, atol=1e-5)
        assert torch.allclose(ours.forward_head(ours.forward_features(x), pre_logits=True),
                              theirs.forward_head(theirs.forward_features(x), pre_logits=True), atol=1e-5)
        assert expected.std() > 0.1  # the comparison is not between two near-constant outputs


@pytest.mark.parametrize("norm", convnext.NORMS)
@pytest.mark.parametrize("name", sorted(convnext.VARIANTS))
def test_forward_backward_every_variant_and_norm(name, norm):
    torch.manual_seed(0)
    model = convnext.create(name, num_classes=5, drop_path_rate=0.2, norm=norm)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    features = model.forward_features(x)
    dims = convnext.VARIANTS[name].dims
    assert features.shape == (2, dims[-1], 1, 1)
    assert model.forward_head(features, pre_logits=True).shape == (2, dims[-1])
    logits = model(x)
    assert logits.shape == (2, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    norms = {type(m) for m in model.modules()}
    if norm == "batchnorm":
        assert nn.BatchNorm2d in norms and convnext.LayerNorm2d not in norms
    else:
        assert not any(issubclass(t, nn.BatchNorm2d) for t in norms)


def test_drop_path_rises_linearly_and_init_follows_the_paper():
    model = convnext.create("convnext_tiny", num_classes=10, drop_path_rate=0.1)
    rates = [block.drop_path.p for stage in model.stages for block in stage.blocks]
    assert len(rates) == 18 and rates[0] == 0 and rates[-1] == pytest.approx(0.1)
    assert rates == pytest.approx(torch.linspace(0, 0.1, 18).tolist())
    timm_model = timm.create_model("convnext_tiny", num_classes=10, drop_path_rate=0.1)
    timm_rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in timm_model.stages for b in s.blocks]
    assert rates == pytest.approx(timm_rates)
    block = model.stages[2].blocks[0]
    assert torch.all(block.gamma == 1e-6)
    assert torch.all(block.pwconv1.bias == 0)
    assert block.pwconv1.weight.std().item() == pytest.approx(0.02, rel=0.1)  # trunc_normal_(std=.02)
    assert block.dwconv.groups == block.dwconv.in_channels == 384  # depthwise 7x7
    assert block.pwconv1.out_features == 4 * 384  # inverted bottleneck


def test_drop_path_is_random_in_training_only():
    model = convnext.create("convnext_atto", num_classes=3, drop_path_rate=0.5, ls_init_value=1.0)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="convnext_tiny"):
        convnext.create("convnext_huge")


def test_notebook_03_model_is_convnext_tiny_with_a_linear_head():
    """Notebook 03 trains helpers.classification's FaceClassifier: our scratch ConvNeXt-T backbone and a
    linear head, as many parameters as timm's convnext_tiny with the same 7,000 classes."""
    recipe = recipes.get("03_convnext_from_scratch")
    model = classification.build_model(recipe, 7000)
    assert isinstance(model.backbone, convnext.ConvNeXt) and model.info.weights is None  # pretrained=False
    assert n_params(model) == n_params(timm.create_model("convnext_tiny", num_classes=7000, pretrained=False))
    rates = [block.drop_path.p for stage in model.backbone.stages for block in stage.blocks]
    assert rates[-1] == pytest.approx(recipe.drop_path_rate) and recipe.drop_path_rate > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_notebook_03_cmu_seed_and_demo_models_build():
    seed = classification.build_model(recipes.get("03_convnext_from_scratch", "cmu_seed"), 7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in seed.backbone.modules())  # [seed01] BatchNorm blocks
    demo = recipes.get("03_convnext_from_scratch").for_profile(config.PROFILES["demo"])
    model = classification.build_model(demo, num_classes=7)
    assert model.info.name == "scratch/convnext_atto"
    assert model(torch.randn(1, 3, demo.image_size, demo.image_size)).shape == (1, 7)
