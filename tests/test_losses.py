"""ArcFace: closed form, numerical safety, agreement with pytorch-metric-learning, training through the engine."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import engine, losses
from helpers.models import heads
from helpers.models.arcface import ArcFaceModel

S, M, EPS = 30.0, 0.5, 1e-6


def reference_loss(emb: np.ndarray, weight: np.ndarray, labels: np.ndarray, s: float, m: float,
                   easy_margin: bool = False) -> tuple[float, np.ndarray]:
    """ArcFace written out in float64 NumPy from the paper's formula (same clamp as the module's spec)."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    weight = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    cos = np.clip(emb @ weight.T, -1 + EPS, 1 - EPS)
    rows = np.arange(len(labels))
    theta = np.arccos(cos[rows, labels])
    if easy_margin:
        target = np.where(theta < np.pi / 2, np.cos(theta + m), np.cos(theta))
    else:
        target = np.where(theta < np.pi - m, np.cos(theta + m), np.cos(theta) - m * np.sin(m))
    logits = s * cos
    logits[rows, labels] = s * target
    top = logits.max(1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(1))
    return float(np.mean(log_z - logits[rows, labels])), logits


def extreme_batch(arcface: losses.ArcFace, n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random embeddings plus rows at angle ~0 (on the centre) and ~pi (opposite the centre) of their class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, arcface.num_classes, (n,), generator=g)
    emb = torch.randn(n, arcface.embedding_dim, generator=g)
    w = arcface.weight.detach()
    emb[0], emb[1] = w[labels[0]] * 3, -w[labels[1]] * 2
    emb[2] = w[labels[2]] + 1e-4 * torch.randn(arcface.embedding_dim, generator=g)
    emb[3] = -w[labels[3]] + 1e-4 * torch.randn(arcface.embedding_dim, generator=g)
    emb[4] = -w[labels[4]] + 0.3 * w.norm(dim=1).mean() * torch.randn(arcface.embedding_dim, generator=g)
    return emb, labels


@pytest.mark.parametrize("easy_margin", [False, True])
def test_matches_closed_form_reference_including_extreme_angles(easy_margin):
    torch.manual_seed(0)
    arcface = losses.ArcFace(16, 10, s=S, m=M, easy_margin=easy_margin)
    emb, labels = extreme_batch(arcface)
    loss, logits = arcface(emb, labels, return_logits=True)
    ref_loss, ref_logits = reference_loss(emb.double().numpy(), arcface.weight.detach().double().numpy(),
                                          labels.numpy(), S, M, easy_margin)
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits, rtol=1e-4, atol=2e-3)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-4)
    theta = torch.acos(arcface.cosine(emb).gather(1, labels[:, None])).detach().numpy()
    assert theta.min() < 0.01 and (theta > math.pi - 0.6).sum() >= 2  # the extremes were really exercised


def test_margin_lowers_target_logit_and_fallback_is_monotone():
    arcface = losses.ArcFace(2, 1, s=1.0, m=M)
    with torch.no_grad():
        arcface.weight.copy_(torch.tensor([[1.0, 0.0]]))
    theta = torch.linspace(0, math.pi, 721)
    emb = torch.stack([theta.cos(), theta.sin()], dim=1)
    cosine = arcface.cosine(emb)
    target = arcface.margin_logits(cosine, torch.zeros(len(theta), dtype=torch.long))[:, 0]
    assert (target <= cosine[:, 0] + 1e-6).all()
    assert (target.diff() <= 1e-6).all()  # decreasing in theta, also past pi - m


def test_gradients_finite_at_cos_plus_minus_one():
    arcface = losses.ArcFace(8, 4, s=64.0, m=M)
    w = arcface.weight.detach()
    emb = torch.stack([w[0], -w[1], w[2] * 5, -w[3] * 5]).clone().requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3])
    loss = arcface(emb, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all() and torch.isfinite(arcface.weight.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_step_has_no_nan_and_fp32_logits(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    arcface = losses.ArcFace(16, 5, s=64.0, m=M)
    optimizer = torch.optim.SGD([*model.parameters(), *arcface.parameters()], lr=0.1)
    x, y = torch.randn(24, 32) * 50, torch.randint(0, 5, (24,))
    try:
        with torch.autocast("cpu", dtype=dtype):
            loss, logits = arcface(model(x), y, return_logits=True)
    except RuntimeError as err:
        pytest.skip(f"CPU autocast does not support {dtype}: {err}")
    loss.backward()
    optimizer.step()
    assert logits.dtype == torch.float32 and torch.isfinite(loss)
    params = [*model.parameters(), *arcface.parameters()]
    assert all(torch.isfinite(p.grad).all() and torch.isfinite(p).all() for p in params)


def test_agrees_with_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    torch.manual_seed(1)
    ours = losses.ArcFace(24, 12, s=S, m=M)
    theirs = pml.ArcFaceLoss(num_classes=12, embedding_size=24, margin=math.degrees(M), scale=S)
    with torch.no_grad():
        theirs.W.copy_(ours.weight.T)  # theirs: (embedding_size, num_classes); margin in degrees
    emb = torch.randn(40, 24)
    emb[:5] = -ours.weight.detach()[:5] + 0.2 * torch.randn(5, 24) * ours.weight.detach().norm(dim=1).mean()
    labels = torch.cat([torch.arange(5), torch.randint(0, 12, (35,))])
    emb_ours, emb_theirs = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    loss_ours, loss_theirs = ours(emb_ours, labels), theirs(emb_theirs, labels)
    loss_ours.backward()
    loss_theirs.backward()
    assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-4)
    torch.testing.assert_close(emb_ours.grad, emb_theirs.grad, rtol=1e-3, atol=1e-5)


def test_bad_labels_and_margin_are_rejected():
    arcface = losses.ArcFace(4, 3)
    with pytest.raises(ValueError, match="integer class labels"):
        arcface(torch.randn(2, 4), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        arcface(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="ArcFaceModel"):
        arcface(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="radians"):
        losses.ArcFace(4, 3, m=28.6)


def clusters(n_per_class: int, n_classes: int = 8, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 1.5
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def test_arcface_model_learns_through_engine_fit(tmp_path):
    torch.manual_seed(0)
    x, y = clusters(48)
    split = torch.randperm(len(y))
    train = torch.utils.data.TensorDataset(x[split[:256]], y[split[:256]])
    val = torch.utils.data.TensorDataset(x[split[256:]], y[split[256:]])
    backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
    model = ArcFaceModel(backbone, heads.EmbeddingHead(32, dim=12), losses.ArcFace(12, 8, s=16.0, m=0.3))
    cfg = engine.TrainConfig(epochs=8, lr=1e-2, weight_decay=0.0, amp="off", channels_last=False,
                             progress=False, device="cpu")
    history = engine.fit(model, torch.utils.data.DataLoader(train, batch_size=32, shuffle=True),
                         torch.utils.data.DataLoader(val, batch_size=64), cfg, tmp_path, loss_fn=model.loss)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_acc"].iloc[-1] >= 0.8  # nearest-centre accuracy; chance is 1/8
    state = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert {"arcface.weight", "head.fc.weight", "backbone.0.weight"} <= set(state)
    embeddings = model.embedder.eval()(x[split[256:]])
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(len(embeddings)))
