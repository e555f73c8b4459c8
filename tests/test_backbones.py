"""Backbone factory: every backbone runs forward/backward, freezing counts are exact
(helpers.models.freezing), weights load offline."""
from urllib.error import URLError

import pytest
import timm
import torch
import torchvision
from facenet_pytorch import InceptionResnetV1
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from helpers import engine, transforms
from helpers.engine import Stage
from helpers.models import backbones, convnext, freezing
from helpers.models.heads import LinearHead, MLPHead

# name -> extra kwargs; the ViT gets a small img_size (timm resizes its position embedding) to stay fast
BACKBONES = {
    "resnet50": {}, "resnet18": {}, "mobilenetv2_100": {}, "convnext_tiny": {}, "inception_v3": {},
    "inception_resnet_v2": {}, "vit_large_patch32_224": {"img_size": 64},
    "torchvision/resnet50": {}, "torchvision/mobilenet_v2": {},
    "facenet/vggface2": {}, "facenet/casia-webface": {},
    "scratch/convnext_tiny": {}, "scratch/convnext_atto": {},
}
SLOW = {"inception_resnet_v2", "vit_large_patch32_224"}  # minutes of CPU, and mostly a test of timm


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in BACKBONES])
def test_forward_backward_at_smallest_input(name):
    torch.manual_seed(0)
    model = backbones.create_model(name, num_classes=5, **BACKBONES[name])
    side = model.info.input_size[0]
    x = torch.randn(2, 3, side, side)
    assert model.embed(x).shape == (2, model.backbone.num_features)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    first_name, first_layer = freezing.layers(model.backbone)[0]
    assert next(first_layer.parameters(recurse=False)).grad is not None, f"no gradient reached {first_name}"
    assert model.head.fc.weight.grad is not None


def test_inputs_below_the_minimum_fail():
    model = backbones.create_model("facenet/vggface2", num_classes=3).eval()
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name, norm, sizes, mean", [
    ("resnet50", "imagenet", (32, 224), transforms.IMAGENET_MEAN),
    ("inception_v3", "facenet", (75, 299), (0.5, 0.5, 0.5)),
    ("facenet/vggface2", "facenet", (75, 160), transforms.FACENET_MEAN),
    ("torchvision/mobilenet_v2", "imagenet", (32, 224), transforms.IMAGENET_MEAN),
])
def test_model_info(name, norm, sizes, mean):
    _, info = backbones.create_backbone(name)
    assert (info.norm, info.input_size, info.weights) == (norm, sizes, None)
    assert info.mean == pytest.approx(mean)
    image = Image.new("RGB", (40, 50))
    assert info.transform("heavy", train=False)(image).shape == (3, sizes[1], sizes[1])
    assert info.transform("heavy", 96, train=True)(image).shape == (3, 96, 96)
    # the transform ends in the backbone's normalisation family (timm's 0.5/0.5 maps to facenet's
    # 127.5/255, 128/255: the same [-1, 1] scaling within 0.4%): a black image maps to -mean/std
    mean, std = (torch.tensor(v) for v in transforms.NORMS[norm])
    assert torch.allclose(mean, torch.tensor(info.mean), atol=0.01)
    assert torch.allclose(std, torch.tensor(info.std), atol=0.01)
    black = info.transform("none", 32, train=False)(Image.new("RGB", (40, 50)))
    assert torch.allclose(black[:, 0, 0], -mean / std, atol=1e-5)


# ------------------------------------------------------------------------------------------------ freezing
# (helpers.models.freezing on the real backbones)

def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bn(c: int) -> int:
    return 2 * c


def test_freeze_resnet18_counts():
    model = backbones.create_model("resnet18", num_classes=10)
    total = 11_689_512 - 513_000 + 10 * 512 + 10  # torchvision's resnet18 count, fc 1000 -> 10 classes
    head = 512 * 10 + 10
    assert freezing.freeze(model, "full")["trainable"] == total == _trainable(model)
    assert freezing.freeze(model, "head")["trainable"] == head == _trainable(model)
    # last 3 layers of layer4.1 (conv1, bn1, conv2, bn2): bn1, conv2 (3x3, 512->512, no bias), bn2
    counts = freezing.freeze(model, ("last", 3))
    assert counts["trainable"] == head + bn(512) + 512 * 512 * 9 + bn(512) == _trainable(model)
    assert (counts["layers"], counts["trainable_layers"], counts["parameters"]) == (40, 3, total)
    assert freezing.freeze(model, ("last", 1000))["trainable"] == total
    # ("first", N): Keras' base.layers[:N] frozen, the rest trains
    first = freezing.freeze(model, ("first", 37))
    assert first["trainable_layers"] == 3 and first["trainable"] == counts["trainable"] == _trainable(model)
    assert freezing.freeze(model, ("first", 0))["trainable"] == total
    assert freezing.freeze(model, ("first", 1000))["trainable"] == head


def test_freeze_mobilenetv2_last_10_counts():
    model = backbones.create_model("mobilenetv2_100", num_classes=7000, dropout=0.5)
    head = 1280 * 7000 + 7000
    last10 = (960 * 160 + bn(160)  # blocks.5.2: project conv + bn
              + 160 * 960 + bn(960) + 960 * 9 + bn(960) + 960 * 320 + bn(320)  # blocks.6.0: pw, dw, pwl
              + 320 * 1280 + bn(1280))  # conv_head + bn2
    assert freezing.freeze(model, ("last", 10))["trainable"] == head + last10 == _trainable(model)
    tv = backbones.create_model("torchvision/mobilenet_v2", num_classes=7000)
    assert freezing.freeze(tv, ("last", 10))["trainable"] == head + last10


def test_freeze_inception_resnet_v1_seed_policy_counts():
    model = backbones.create_model("facenet/vggface2", num_classes=7000, head=[1024, 512], dropout=0.5)
    head = (512 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 7000 + 7000)
    branch = 1792 * 192 + bn(192)  # 1x1 conv 1792 -> 192 (no bias) + bn
    conv_1x3 = 192 * 192 * 3
    up = 384 * 1792 + 1792  # Block8.conv2d: 1x1, 384 -> 1792, with bias
    last15 = (bn(512) + 1792 * 512  # last_bn, last_linear (no bias)
              + up + 2 * (conv_1x3 + bn(192)) + 2 * branch  # block8: conv2d, branch1.2/1.1/1.0, branch0
              + up + (conv_1x3 + bn(192)) + bn(192))  # repeat_3.4: conv2d, branch1.2 conv+bn, branch1.1.bn
    assert freezing.freeze(model, ("last", 15))["trainable"] == head + last15 == _trainable(model)
    assert freezing.freeze(model, "head")["trainable"] == head


def test_freeze_switches_gradients_per_layer():
    model = backbones.create_model("resnet18", num_classes=4)
    freezing.freeze(model, ("last", 2))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.backbone.layer4[1].conv2.weight.grad is not None
    assert model.backbone.layer4[1].bn1.weight.grad is None
    assert model.backbone.conv1.weight.grad is None


@pytest.mark.parametrize("policy", ["partial", ("last", -1), ("first", -1), ("middle", 3), ("last",)])
def test_freeze_rejects_unknown_policies(policy):
    with pytest.raises(ValueError, match="Freezing policy"):
        freezing.freeze(backbones.create_model("resnet18", num_classes=2), policy)


def test_summary_counts():
    model = backbones.create_model("resnet18", num_classes=10, head=[64])
    freezing.freeze(model, "head")
    head = 512 * 64 + 64 + 64 * 10 + 10
    assert freezing.summary(model) == {"parameters": 11_176_512 + head, "trainable": head,
                                        "input_size": (3, 224, 224)}
    assert freezing.summary(model, image_size=96)["input_size"] == (3, 96, 96)


def test_heads_by_argument():
    assert isinstance(backbones.create_model("resnet18", 3).head, LinearHead)
    assert isinstance(backbones.create_model("resnet18", 3, head=[32, 16]).head, MLPHead)
    with pytest.raises(ValueError, match="head="):
        backbones.create_model("resnet18", 3, head="mlp")
    with pytest.raises(ValueError, match="Unknown model source"):
        backbones.create_backbone("keras/resnet50")


# ------------------------------------------------------------------------------ frozen, then unfrozen

def test_fit_stages_freezes_then_unfreezes(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = backbones.create_model("resnet18", num_classes=4)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = engine.TrainConfig(epochs=99, lr=1e-3, optimizer="adam", scheduler="none", progress=False,
                             amp="off", channels_last=False, device="cpu", tensorboard=False)
    stages = [Stage("head", 1, "head", overrides={"lr": 1e-2}),
              Stage("last2", 2, ("last", 2), overrides={"lr": 1e-3})]
    history = engine.fit_stages(model, loader, loader, cfg, tmp_path, stages)
    assert history["epoch"].tolist() == [1, 2, 3] and history["stage"].tolist() == [1, 2, 2]
    assert history["lr"].tolist() == [1e-2, 1e-3, 1e-3]

    def changed(before: dict, after: dict) -> set[str]:  # weights and BatchNorm statistics that moved
        return {k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])}

    stage_1 = engine.load_checkpoint(tmp_path / "stage_1" / "last.pt")["model"]
    stage_2 = engine.load_checkpoint(tmp_path / "stage_2" / "last.pt")["model"]
    # stage 1: the head alone; the frozen backbone's BatchNorm statistics stay as they were too
    assert changed(snapshot, stage_1) == {"head.fc.weight", "head.fc.bias"}
    # stage 2: the last two layers (layer4.1.conv2, layer4.1.bn2) train as well
    moved = changed(stage_1, stage_2)
    assert {"head.fc.weight", "backbone.layer4.1.conv2.weight", "backbone.layer4.1.bn2.weight",
            "backbone.layer4.1.bn2.running_mean"} <= moved
    trainable = ("head.", "backbone.layer4.1.conv2.", "backbone.layer4.1.bn2.")
    assert not {k for k in moved if not k.startswith(trainable)}
    assert (tmp_path / "stage_2" / "history.csv").is_file()
    # the model ends on the weights of the best epoch of the whole run
    best = engine.load_checkpoint(tmp_path / "best.pt")["model"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best.items())


# ---------------------------------------------------------------------------------- pretrained weights

@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder (via torch.hub.set_dir, restored afterwards) where downloads always fail."""
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(url, dst, *args, **kwargs):
        raise URLError("simulated: no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub" / "checkpoints"


def _same(module, state) -> bool:
    ours = module.state_dict()
    return all(torch.equal(ours[k], v) for k, v in state.items() if k in ours)


def test_torchvision_weights_from_hub_checkpoints(hub_dir):
    torch.manual_seed(1)
    saved = torchvision.models.mobilenet_v2(weights=None).state_dict()  # what the real file holds
    hub_dir.mkdir(parents=True)
    path = hub_dir / "mobilenet_v2-7ebf99e0.pth"
    torch.save(saved, path)
    model, info = backbones.create_backbone("torchvision/mobilenet_v2", pretrained=True)
    assert info.weights == str(path)
    assert _same(model, saved) and torch.equal(model.features[0][0].weight, saved["features.0.0.weight"])


def test_facenet_weights_from_hub_checkpoints(hub_dir):
    torch.manual_seed(2)
    saved = InceptionResnetV1(classify=True, num_classes=8631).state_dict()  # keys of the released file
    hub_dir.mkdir(parents=True)
    path = hub_dir / "20180402-114759-vggface2.pt"
    torch.save(saved, path)
    model = backbones.create_model("facenet/vggface2", num_classes=7, pretrained=True, head=[16])
    assert model.info.weights == str(path)
    assert torch.equal(model.backbone.conv2d_1a.conv.weight, saved["conv2d_1a.conv.weight"])
    assert torch.equal(model.backbone.last_bn.running_var, saved["last_bn.running_var"])


def test_timm_weights_from_file(tmp_path):
    torch.manual_seed(3)
    saved = timm.create_model("resnet18").state_dict()  # with its 1000-class fc, like the hub file
    path = tmp_path / "resnet18.pth"
    torch.save(saved, path)
    model, info = backbones.create_backbone("resnet18", weights_file=path)
    assert info.weights == str(path)
    assert _same(model, saved) and torch.equal(model.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])


def test_scratch_convnext_from_timm_file(tmp_path):
    torch.manual_seed(4)
    reference = timm.create_model("convnext_atto").eval()
    path = tmp_path / "convnext_atto.pth"
    torch.save(reference.state_dict(), path)
    model, _ = backbones.create_backbone("scratch/convnext_atto", weights_file=path)
    x = torch.randn(2, 3, 64, 64)
    expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
    torch.testing.assert_close(model.eval()(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="weights_file"):
        backbones.create_backbone("scratch/convnext_atto", pretrained=True)
    assert isinstance(model, convnext.ConvNeXt)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        backbones.create_backbone("torchvision/resnet50", weights_file=tmp_path / "nowhere.pth")


@pytest.mark.parametrize("name, file", [("torchvision/resnet50", "resnet50-11ad3fa6.pth"),
                                        ("facenet/vggface2", "20180402-114759-vggface2.pt"),
                                        ("facenet/casia-webface", "20180408-102900-casia-webface.pt")])
def test_offline_message_names_file_and_folder(hub_dir, name, file):
    with pytest.raises(backbones.WeightsUnavailableError) as err:
        backbones.create_backbone(name, pretrained=True)
    message = str(err.value)
    assert file in message and str(hub_dir / file) in message and "weights_file" in message


def test_offline_message_for_timm(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("simulated: no network")

    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", offline)
    with pytest.raises(backbones.WeightsUnavailableError) as err:
        backbones.create_backbone("resnet18", pretrained=True)
    message = str(err.value)
    assert "timm/resnet18.a1_in1k" in message and "model.safetensors" in message
    assert "pretrained_cfg_overlay=dict(file=PATH)" in message
