"""The Optuna study of helpers.search: search spaces, a study that resumes from its SQLite file without repeating
trials, Hyperband pruning through engine.fit's per-epoch callback, and the table, plots and best values fed back
into notebook 10's recipe."""
import matplotlib.pyplot as plt
import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from helpers import adience, engine, recipes, search
from helpers.models import backbones, heads

pytestmark = pytest.mark.usefixtures("one_thread")
SPACE = {"lr": ("log", 1e-4, 1e-1), "dropout": ("float", 0.0, 0.5), "units": ("choice", (8, 16)), "k": ("int", 1, 3)}


def quadratic(trial) -> float:
    values = search.suggest(trial, SPACE)
    return -((values["dropout"] - 0.2) ** 2) + 0.01 * values["k"]


def test_suggest_draws_each_kind_in_its_range():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = search.suggest(trial, SPACE)
        assert 1e-4 <= values["lr"] <= 1e-1 and 0 <= values["dropout"] <= 0.5
        assert values["units"] in (8, 16) and values["k"] in (1, 2, 3)
        study.tell(trial, 0.0)
    with pytest.raises(ValueError, match="kind 'normal'"):
        search.suggest(study.ask(), {"x": ("normal", 0, 1)})


def test_study_resumes_from_its_file_without_repeating_trials(tmp_path):
    study = search.optimize(search.open_study(tmp_path, "s", max_resource=3), quadratic, trials=3)
    assert search.finished(study) == 3 and (tmp_path / "study.db").is_file()
    again = search.open_study(tmp_path, "s", max_resource=3)  # a new session
    assert search.finished(search.optimize(again, quadratic, trials=3)) == 3  # already done: nothing runs
    search.optimize(again, quadratic, trials=5)
    params = [tuple(sorted(t.params.items())) for t in again.trials]
    assert len(params) == 5 and len(set(params)) == 5  # the resumed sampler drew new configurations
    assert search.best_trial(again).value == max(t.value for t in again.trials)
    assert search.summary(again) == {"search_trials": 5, "search_best_value": search.best_trial(again).value}


def test_running_trials_do_not_count_as_finished(tmp_path):
    study = search.open_study(tmp_path, "s", max_resource=3)
    study.ask()  # a trial a lost session left running
    search.optimize(study, quadratic, trials=2)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2 and states.count(TrialState.RUNNING) == 1


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    return TensorDataset(torch.randn(n, 8, generator=g) + 2.0 * y[:, None], y)


def tiny_model() -> backbones.FaceClassifier:
    body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    body.num_features = 16
    info = backbones.ModelInfo("tiny", "test", (1, 1), "imagenet", (0.5,) * 3, (0.5,) * 3)
    return backbones.FaceClassifier(body, heads.LinearHead(16, 2), info)


def test_hyperband_prunes_weak_trials_through_engine_fit(tmp_path):
    """Each trial trains for real; the reporter hands every epoch's val_acc to Hyperband, which stops weak ones
    (a rate too small to learn) before their last epoch, leaving their last.pt at the pruned epoch."""
    train = DataLoader(blobs(128, 1), batch_size=32, shuffle=True)
    val = DataLoader(blobs(128, 2), batch_size=64)

    def objective(trial) -> float:
        lr = trial.suggest_float("lr", 1e-7, 1e-1, log=True)
        cfg = engine.TrainConfig(epochs=9, lr=lr, scheduler="none", weight_decay=0.0, progress=False,
                                 tensorboard=False)
        history = engine.fit(tiny_model(), train, val, cfg, tmp_path / f"trial_{trial.number}",
                             on_epoch=search.reporter(trial, "val_acc"))
        return float(history["val_acc"].max())

    study = search.open_study(tmp_path, "s", max_resource=9)
    for lr in [3e-2] * 3 + [1e-7] * 9:  # three rates that learn first, then nine that cannot
        study.enqueue_trial({"lr": lr})
    search.optimize(study, objective, trials=12)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    early = [t for t in pruned if len(t.intermediate_values) < 9]
    assert early and all(t.params["lr"] == 1e-7 for t in pruned)
    saved = engine.load_checkpoint(tmp_path / f"trial_{early[0].number}" / "last.pt")
    assert saved["epoch"] == len(early[0].intermediate_values)  # training stopped at the pruned epoch
    assert search.best_trial(study).value > 0.9  # a good rate learns the blobs
    table = search.table(study)
    assert table["best"].sum() == 1 and set(table["state"]) == {"complete", "pruned"}
    assert {"lr", "epochs", "seconds", "value"} <= set(table.columns)


def test_plots_are_matplotlib_figures_and_leave_the_style_alone(tmp_path):
    study = search.optimize(search.open_study(tmp_path, "s", max_resource=3), quadratic, trials=4)
    before = dict(plt.rcParams)
    figures = search.plots(study)
    assert set(figures) == {"history", "intermediate values", "slice"}
    assert all(isinstance(f, plt.Figure) for f in figures.values())
    assert dict(plt.rcParams) == before and plt.get_fignums() == []


def test_best_trial_feeds_the_recipe(tmp_path):
    recipe = recipes.resolve("10_adience_transfer", lr=0.5)
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 2e-3, "head_units": 64, "dropout": 0.1}, value=0.9,
        distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
                       "head_units": optuna.distributions.CategoricalDistribution((32, 64)),
                       "dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}))
    best = adience.with_best(recipe, study)
    assert best.train.lr == 2e-3 and best.head == (64, 32) and best.dropout == 0.1
    assert best.table().loc["lr", "source"].startswith("Optuna Hyperband")
    assert best.train.epochs == recipe.train.epochs and best.model == recipe.model
    assert adience.with_best(recipe, optuna.create_study()) is recipe  # no finished trial: unchanged
