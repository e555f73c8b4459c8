"""Training in stages (helpers.engine.fit_stages) and freezing: the best checkpoint of the whole run is what the
model ends on, frozen BatchNorm keeps its statistics, head-only stages take per-part rates, and resume skips
finished stages."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import engine, recipes
from helpers.engine import Stage, TrainConfig
from helpers.models import backbones, freezing, heads

pytestmark = pytest.mark.usefixtures("one_thread")
N_CLASSES, DIM = 4, 16


def blobs(n: int, seed: int) -> TensorDataset:
    centres = torch.randn(N_CLASSES, DIM, generator=torch.Generator().manual_seed(0)) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    return TensorDataset(centres[y] + torch.randn(n, DIM, generator=g), y)


class Body(nn.Module):
    """A tiny backbone with BatchNorm layers, pooled features of width 32."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(DIM, 32), nn.BatchNorm1d(32)
        self.fc2, self.bn2 = nn.Linear(32, 32), nn.BatchNorm1d(32)
        self.num_features = 32

    def forward(self, x):
        return torch.relu(self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x))))))


def classifier(seed: int = 0) -> backbones.FaceClassifier:
    torch.manual_seed(seed)
    info = backbones.ModelInfo("body", "test", (1, 1), "imagenet", (0.5,) * 3, (0.5,) * 3)
    return backbones.FaceClassifier(Body(), heads.LinearHead(32, N_CLASSES), info)


def loaders():
    return (DataLoader(blobs(256, 1), batch_size=32, shuffle=True, generator=torch.Generator()),
            DataLoader(blobs(256, 2), batch_size=64))


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "lr": 1e-2, "scheduler": "none", "weight_decay": 0.0, "progress": False,
                          "tensorboard": False, **kw})


def test_the_model_ends_on_the_best_checkpoint_of_all_stages(tmp_path):
    """Stage 2 trains at a rate that wrecks the model: evaluation must see stage 1's best weights, as the
    notebooks' scores and CSVs do (the weights of the last epoch scored far lower)."""
    model, (train, val) = classifier(), loaders()
    stages = [Stage("good", 3, overrides={"lr": 1e-2}), Stage("wreck", 2, overrides={"lr": 50.0, "optimizer": "sgd"})]
    history = engine.fit_stages(model, train, val, cfg(), tmp_path, stages)
    best = history.val_acc.max()
    assert history.val_acc.iloc[-1] < best - 0.2  # the last weights are much worse
    assert engine.evaluate(model, val)["acc"] == pytest.approx(best)
    assert (tmp_path / "best.pt").stat().st_ino == (tmp_path / "stage_1" / "best.pt").stat().st_ino
    assert engine.load_checkpoint(tmp_path / "best.pt")["epoch"] == history.loc[history.val_acc.idxmax(), "epoch"]


@pytest.mark.parametrize("policy", ["head", ("last", 2)])
def test_frozen_batchnorm_keeps_its_statistics(tmp_path, policy):
    """Under a freeze policy, BatchNorm layers whose parameters are frozen stay in eval mode: their running
    statistics do not move, while a trainable one's do."""
    model, (train, val) = classifier(), loaders()
    freezing.freeze(model, policy)
    frozen = [m for m in (model.backbone.bn1, model.backbone.bn2) if not m.weight.requires_grad]
    trainable = [m for m in (model.backbone.bn1, model.backbone.bn2) if m.weight.requires_grad]
    before = {id(m): m.running_mean.clone() for m in frozen + trainable}
    engine.fit(model, train, val, cfg(epochs=1), tmp_path)
    assert frozen
    for module in frozen:
        assert torch.equal(module.running_mean, before[id(module)])
    for module in trainable:
        assert not torch.equal(module.running_mean, before[id(module)])


def test_full_policy_updates_every_batchnorm(tmp_path):
    model, (train, val) = classifier(), loaders()
    before = model.backbone.bn1.running_mean.clone()
    freezing.freeze(model, "full")
    engine.fit(model, train, val, cfg(epochs=1), tmp_path)
    assert not torch.equal(model.backbone.bn1.running_mean, before)


def test_head_only_stage_with_a_backbone_rate(tmp_path):
    """A head-only stage under a recipe with backbone_lr_scale != 1: the backbone prefix names only frozen
    parameters there, which is fine; then the fine-tune stage trains the body at the scaled rate."""
    recipe = recipes.get("04_resnet50", "improved").with_values(epochs=3, frozen_epochs=1, warmup_epochs=0)
    stages = recipes.stages(recipe)
    assert [s.freeze for s in stages] == ["head", "full"]
    model, (train, val) = classifier(), loaders()
    history = engine.fit_stages(model, train, val, cfg(), tmp_path, stages)
    assert history.stage.tolist() == [1, 2, 2]


def test_a_prefix_naming_no_parameter_is_still_an_error(tmp_path):
    model, (train, val) = classifier(), loaders()
    with pytest.raises(ValueError, match="match no parameter"):
        engine.fit(model, train, val, cfg(param_groups={"bakcbone.": 0.1}), tmp_path)


def test_resume_skips_finished_stages_and_matches_an_uninterrupted_run(tmp_path):
    stages = [Stage("head", 1, "head"), Stage("all", 2, "full")]
    model, (train, val) = classifier(), loaders()
    engine.fit_stages(model, train, val, cfg(), tmp_path / "whole", stages)

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def stop_in_stage_two(outputs, targets):
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] == 8 + 4:  # stage 1 has 8 batches; stop 4 batches into stage 2
            raise Stop
        return nn.functional.cross_entropy(outputs, targets)

    interrupted, (train, val) = classifier(), loaders()
    with pytest.raises(Stop):
        engine.fit_stages(interrupted, train, val, cfg(), tmp_path / "cut",
                          [Stage(s.name, s.epochs, s.freeze, loss="stop") for s in stages],
                          losses={"stop": stop_in_stage_two})
    assert (tmp_path / "cut" / "stage_1" / "last.pt").is_file()
    assert not (tmp_path / "cut" / "stage_2" / "last.pt").exists()
    resumed, (train, val) = classifier(), loaders()
    engine.fit_stages(resumed, train, val, cfg(), tmp_path / "cut", stages, resume=True)
    whole = engine.load_checkpoint(tmp_path / "whole" / "stage_2" / "last.pt")["model"]
    again = engine.load_checkpoint(tmp_path / "cut" / "stage_2" / "last.pt")["model"]
    for key in whole:
        assert torch.equal(whole[key], again[key]), key
