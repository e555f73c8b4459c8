"""The dual-head model (helpers.models.dual_head): one backbone pass for both tasks, unit embeddings, the four
parameter prefixes, and a loss whose parts are the gender cross-entropy and the model's own ArcFace."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.losses import ArcFace
from helpers.models import dual_head
from helpers.models.backbones import ModelInfo

pytestmark = pytest.mark.usefixtures("one_thread")
DIM, IDS = 12, 5


class Body(nn.Module):
    """A tiny backbone of pooled features (width 16) with a LayerNorm, so rows never mix."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.num_features = nn.Linear(DIM, 16), nn.LayerNorm(16), 16

    def forward(self, x):
        return torch.relu(self.norm(self.fc(x)))


def tiny(seed: int = 0) -> dual_head.DualHeadModel:
    torch.manual_seed(seed)
    info = ModelInfo("body", "test", (1, 1), "imagenet", (0.5,) * 3, (0.5,) * 3)
    return dual_head.DualHeadModel(Body(), dual_head.mlp_head(16, 2, 8, 0.5), dual_head.EmbeddingMLP(16, 6, 8, 0.4),
                                   ArcFace(6, IDS, s=16.0, m=0.5), info)


def test_heads_follow_the_seed_and_parameters_have_four_prefixes():
    model = tiny()
    layers = [type(m) for m in model.gender_head]
    assert layers == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert [type(m) for m in model.verification_head] == layers
    assert model.gender_head[3].p == 0.5 and model.verification_head[3].p == 0.4
    prefixes = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert prefixes == {"backbone", "gender_head", "verification_head", "arcface"}


def test_a_batch_gets_every_head_and_embeddings_are_unit_vectors():
    model = tiny().eval()
    out = model(torch.randn(4, DIM))
    assert out["gender"].shape == (4, 2) and out["embedding"].shape == (4, 6) and out["cosine"].shape == (4, IDS)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(out["cosine"], model.arcface.cosine(out["embedding"]))
    assert torch.allclose(model.embedder(torch.ones(1, DIM)), model(torch.ones(1, DIM))["embedding"])


def test_per_task_inputs_share_one_backbone_pass_and_each_head_sees_its_own_images():
    model = tiny().eval()
    a, b = torch.randn(3, DIM), torch.randn(5, DIM)
    calls = []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    out = model({"gender": a, "identity": b})
    assert calls == [8]
    assert set(out) == {"gender", "embedding", "cosine"}
    assert torch.allclose(out["gender"], model(a)["gender"], atol=1e-6)
    assert torch.allclose(out["embedding"], model(b)["embedding"], atol=1e-6)
    assert set(model({"identity": b})) == {"embedding", "cosine"}
    empty = model({"gender": a[:0], "identity": b})  # the end of an evaluation zip
    assert empty["gender"].shape == (0, 2) and empty["embedding"].shape == (5, 6)
    with pytest.raises(KeyError, match="unknown task"):
        model({"age": a})


def test_loss_is_the_weighted_sum_of_cross_entropy_and_the_models_arcface():
    model = tiny()
    out = model({"gender": torch.randn(6, DIM), "identity": torch.randn(4, DIM)})
    targets = {"gender": torch.tensor([0, 1, 1, 1, 0, 1]), "identity": torch.tensor([0, 4, 2, 2])}
    weights = torch.tensor([2.0, 0.5])
    loss = dual_head.DualHeadLoss(model.arcface, {"gender": 0.3, "identity": 0.7}, weights, label_smoothing=0.1)
    gender = F.cross_entropy(out["gender"], targets["gender"], weight=weights, label_smoothing=0.1)
    identity = model.arcface.loss_from_cosine(out["cosine"], targets["identity"])
    assert loss(out, targets).item() == pytest.approx((0.3 * gender + 0.7 * identity).item(), rel=1e-6)
    assert not isinstance(loss, nn.Module)  # the centres are the model's: the engine must not train them twice
    only_gender = dual_head.DualHeadLoss(model.arcface, {"gender": 1.0, "identity": 0.0})
    assert only_gender(out, targets).item() == pytest.approx(F.cross_entropy(out["gender"], targets["gender"]).item())


def test_loss_of_missing_or_empty_targets():
    model = tiny()
    loss = dual_head.DualHeadLoss(model.arcface, {"gender": 1.0, "identity": 1.0})
    out = model({"gender": torch.randn(0, DIM), "identity": torch.randn(3, DIM)})
    empty = {"gender": torch.zeros(0, dtype=torch.long), "identity": torch.tensor([0, 1, 2])}
    assert loss(out, empty).item() == pytest.approx(model.arcface.loss_from_cosine(out["cosine"], empty["identity"]).item())
    unseen = {"gender": torch.zeros(0, dtype=torch.long), "person": torch.tensor([0, 1, 2])}
    with pytest.raises(KeyError, match="identity"):  # training without the labels it needs
        loss(out, unseen)
    with torch.no_grad():  # evaluation on people unseen in training: no ArcFace loss exists
        assert math.isnan(loss(out, unseen).item())


def test_create_on_the_scratch_convnext():
    model = dual_head.create("scratch/convnext_atto", num_identities=7, hidden=32, embedding_dim=16, s=16.0)
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out["cosine"].shape == (2, 7) and model.arcface.s == 16.0 and model.info.norm == "imagenet"
