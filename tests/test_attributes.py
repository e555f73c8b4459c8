"""Multi-task gender/race/age (helpers.attributes, helpers.models.multitask, losses.MultiTaskLoss): label
mapping, splits, class weights, model, loss, metrics, learning on demo data."""
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import attributes as mt
from helpers import config, engine, recipes
from helpers.losses import MultiTaskLoss
from helpers.models import multitask as models


def _frame(counts: dict[tuple[int, int], int]) -> pd.DataFrame:
    """A label frame with ``counts[(race, gender)]`` rows per stratum."""
    rows = [(f"/x/{race}_{gender}_{i}.jpg", gender, race, 3, 24.5)
            for (race, gender), n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "gender", "race", "age", "age_years"])


# ------------------------------------------------------------------------------------------------ labels

def test_age_bins_follow_fairface_edges():
    years = [0, 2, 3, 9, 10, 19, 20, 29.9, 60, 69, 70, 116]
    assert mt.age_to_bin(years).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 7, 7, 8, 8]
    assert mt.age_to_bin(mt.AGE_MIDPOINTS).tolist() == list(range(9))  # each midpoint lies in its own bin


def test_utkface_mapping_keeps_gender_and_five_races_and_bins_ages():
    utk = pd.DataFrame({"path": ["a", "b", "c", "d"], "age": [1, 25, 70, 116], "gender_idx": [0, 1, 1, 0],
                        "race_idx": [0, 2, 4, 3]})
    out = mt.from_utkface(utk)
    assert out["gender"].tolist() == [0, 1, 1, 0] and out["race"].tolist() == [0, 2, 4, 3]
    assert out["age"].tolist() == [0, 3, 8, 8]
    assert out["age_years"].tolist() == [1, 25, 70, 116]
    labels = mt.label_space("utkface")
    assert labels.num_races == 5 and labels.races[4] == "Others" and labels.genders == ("Male", "Female")
    assert mt.mapping_table("utkface").loc["race", "classes / target"].count(",") == 4


def test_utkface_mapping_rejects_labels_out_of_range():
    utk = pd.DataFrame({"path": ["a"], "age": [30], "gender_idx": [0], "race_idx": [5]})
    with pytest.raises(ValueError, match="race outside"):
        mt.from_utkface(utk)


def test_fairface_mapping_uses_bin_midpoints():
    ff = pd.DataFrame({"path": ["a", "b"], "gender_idx": [1, 0], "race_idx": [6, 0], "age_idx": [0, 8]})
    out = mt.from_fairface(ff)
    assert out["age_years"].tolist() == [1.0, 75.0] and out["race"].tolist() == [6, 0]


# ------------------------------------------------------------------------------------------------ splits

STRATA = {(0, 0): 200, (0, 1): 100, (1, 0): 60, (1, 1): 40}


def test_stratified_split_proportions_per_race_and_gender():
    frame = _frame(STRATA)
    parts = mt.make_splits({"all": frame}, "stratified", seed=0)
    assert list(parts) == ["train", "val", "test"]
    assert sum(len(p) for p in parts.values()) == len(frame)
    assert set().union(*(set(p["path"]) for p in parts.values())) == set(frame["path"])
    for (race, gender), n in STRATA.items():
        for name, share in mt.SEED_FRACTIONS.items():
            part = parts[name]
            got = ((part["race"] == race) & (part["gender"] == gender)).sum()
            assert abs(got - share * n) <= 1, (name, race, gender, got)


def test_split_reproducible_from_the_seed():
    frame = _frame(STRATA)
    first = mt.make_splits({"all": frame}, seed=3)
    again = mt.make_splits({"all": frame}, seed=3)
    other = mt.make_splits({"all": frame}, seed=4)
    assert first["test"]["path"].tolist() == again["test"]["path"].tolist()
    assert first["test"]["path"].tolist() != other["test"]["path"].tolist()


def test_subset_fraction_keeps_strata_proportions():
    frame = _frame(STRATA)
    parts = mt.make_splits({"all": frame}, fraction=0.1, seed=0)
    kept = pd.concat(parts.values())
    assert len(kept) == pytest.approx(40, abs=2)
    counts = kept.groupby(["race", "gender"]).size()
    assert counts[(0, 0)] == pytest.approx(20, abs=1) and counts[(1, 1)] == pytest.approx(4, abs=1)


def test_official_split_holds_out_fairface_val_as_test():
    train, val = _frame(STRATA), _frame({(0, 0): 10, (1, 1): 10}).assign(path=lambda d: "v" + d["path"])
    parts = mt.make_splits({"train": train, "val": val}, "official")
    assert parts["test"]["path"].tolist() == val["path"].tolist()
    assert len(parts["train"]) + len(parts["val"]) == len(train)
    assert len(parts["val"]) == pytest.approx(0.15 * len(train), abs=4)
    with pytest.raises(ValueError, match="UTKFace has none"):
        mt.make_splits({"all": train}, "official")


def test_race_class_weights_balanced_from_training_split():
    train = _frame({(0, 0): 3, (1, 0): 1})  # race 0 three times, race 1 once, race 2 absent
    weights = mt.race_weights(train, num_races=3)
    np.testing.assert_allclose(weights.numpy(), [4 / (2 * 3), 4 / (2 * 1), 0.0])
    # each present race carries the same total weight
    assert (weights[:2] * torch.tensor([3.0, 1.0])).tolist() == pytest.approx([2.0, 2.0])


# ------------------------------------------------------------------------------------------ model, loss

@pytest.mark.parametrize("age_mode, age_shape", [("regression", (4,)), ("classification", (4, 9))])
def test_model_outputs(age_mode, age_shape):
    model = models.create("baseline", num_races=5, age_mode=age_mode).eval()
    out = model(torch.randn(4, 3, 32, 32))
    assert out["gender"].shape == (4, 2) and out["race"].shape == (4, 5) and out["age"].shape == age_shape
    with pytest.raises(ValueError, match="age_mode"):
        models.create("baseline", age_mode="ordinal")


def test_regression_head_outputs_years_in_the_age_range():
    model = models.MultiTaskModel(models.BaselineCNN(), num_races=7, age_range=(10.0, 50.0)).eval()
    torch.nn.init.zeros_(model.heads["age"].fc.weight)
    torch.nn.init.constant_(model.heads["age"].fc.bias, 0.5)
    assert model(torch.randn(2, 3, 32, 32))["age"].tolist() == [30.0, 30.0]


def _targets(gender, race, age, years):
    return {"gender": torch.tensor(gender), "race": torch.tensor(race), "age": torch.tensor(age),
            "age_years": torch.tensor(years, dtype=torch.float32)}


def test_loss_known_values_and_weights():
    outputs = {"gender": torch.zeros(2, 2), "race": torch.zeros(2, 4), "age": torch.tensor([30.0, 50.0])}
    targets = _targets([0, 1], [1, 3], [3, 4], [40.0, 40.0])
    loss = MultiTaskLoss(age_range=(0.0, 100.0))
    parts = loss.components(outputs, targets)
    assert parts["gender"].item() == pytest.approx(math.log(2))
    assert parts["race"].item() == pytest.approx(math.log(4))
    assert parts["age"].item() == pytest.approx(0.1)  # |30-40|, |50-40| -> 10 years of a 100-year range
    weighted = MultiTaskLoss({"gender": 2.0, "age": 0.5})(outputs, targets)
    assert weighted.item() == pytest.approx(2 * math.log(2) + math.log(4) + 0.05)


def test_loss_race_class_weights_and_age_classification():
    race_logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # right, right, wrong
    outputs = {"gender": torch.zeros(3, 2), "race": race_logits, "age": torch.zeros(3, 9)}
    targets = _targets([0, 0, 0], [0, 1, 1], [0, 1, 2], [1.0, 6.0, 14.5])
    right, wrong = (-torch.log_softmax(torch.tensor([2.0, 0.0]), 0)).tolist()
    loss = MultiTaskLoss(race_weights=torch.tensor([1.0, 3.0]), age_mode="classification")
    parts = loss.components(outputs, targets)
    assert parts["race"].item() == pytest.approx((right + 3 * right + 3 * wrong) / 7)
    assert parts["age"].item() == pytest.approx(math.log(9))


def test_loss_names_missing_keys():
    with pytest.raises(KeyError, match="age_years"):
        MultiTaskLoss()({"gender": torch.zeros(1, 2), "race": torch.zeros(1, 3), "age": torch.zeros(1)},
                        {"gender": torch.tensor([0]), "race": torch.tensor([0]), "age": torch.tensor([0])})


def test_build_loss_follows_the_recipe():
    """Task weights, race class weights from the training split and label smoothing come from the recipe."""
    recipe = recipes.get("08_multitask_fairface").with_values(label_smoothing=0.1,
                                                              loss_weights=(2.0, 1.0, 0.5))
    labels, train = mt.label_space("utkface"), _frame({(0, 0): 3, (1, 1): 1, (4, 0): 2})
    loss = mt.build_loss(recipe, labels, train)
    assert loss.weights == {"gender": 2.0, "race": 1.0, "age": 0.5} and loss.age_mode == recipe.age_mode
    assert torch.equal(loss.race_weights, mt.race_weights(train, labels.num_races))
    outputs = {"gender": torch.tensor([[3.0, 0.0], [0.0, 1.0]]), "race": torch.zeros(2, 5),
               "age": torch.zeros(2)}
    targets = _targets([0, 1], [0, 1], [3, 3], [24.5, 24.5])
    smoothed = torch.nn.functional.cross_entropy(outputs["gender"], targets["gender"], label_smoothing=0.1)
    assert loss.components(outputs, targets)["gender"].item() == pytest.approx(smoothed.item())
    assert smoothed.item() != pytest.approx(torch.nn.functional.cross_entropy(outputs["gender"],
                                                                              targets["gender"]).item())
    unweighted = mt.build_loss(recipe.with_values(race_class_weights=False), labels, train)
    assert unweighted.race_weights is None


def test_decode_regression_and_classification():
    outputs = {"gender": torch.tensor([[0.0, 1.0]]), "race": torch.tensor([[0.0, 0.0, 3.0]]),
               "age": torch.tensor([33.0])}
    pred = mt.decode(outputs, "regression")
    assert pred["gender"].tolist() == [1] and pred["race"].tolist() == [2] and pred["age"].tolist() == [4]
    assert pred["gender_prob"][0, 1] == pytest.approx(1 / (1 + math.exp(-1)))
    pred = mt.decode({**outputs, "age": torch.eye(9)[[6]]}, "classification")
    assert pred["age"].tolist() == [6] and pred["age_years"].tolist() == [54.5]


def test_chance_and_no_image_references():
    test = pd.DataFrame({"gender": [0, 1, 1], "race": [0, 1, 1], "age": [0, 4, 8], "age_years": [1.0, 44.5, 75.0]})
    chance = mt.chance(test, mt.label_space("fairface"))
    assert chance["race_acc"] == pytest.approx(1 / 7) and chance["age_acc"] == pytest.approx(1 / 9)
    assert chance["age_one_off"] == pytest.approx((2 + 3 + 2) / 27)
    expected = np.mean([np.mean(np.abs(np.array(mt.AGE_MIDPOINTS) - y)) for y in [1.0, 44.5, 75.0]])
    assert chance["age_mae"] == pytest.approx(expected)
    majority = mt.no_image(test.iloc[[1, 2]], test)  # train: majority gender 1, race 1, median 59.75 years
    assert majority["gender_acc"] == pytest.approx(2 / 3)
    assert majority["age_mae"] == pytest.approx(np.mean([58.75, 15.25, 15.25]))


def test_init_age_bias_starts_at_the_prior():
    model = models.create("baseline", age_mode="regression").eval()
    torch.nn.init.zeros_(model.heads["age"].fc.weight)
    model.init_age_bias(33.0)
    assert model(torch.randn(2, 3, 32, 32))["age"].tolist() == pytest.approx([33.0, 33.0])
    model = models.create("baseline", age_mode="classification").eval()
    torch.nn.init.zeros_(model.heads["age"].fc.weight)
    prior = np.array([0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02])
    model.init_age_bias(prior)
    probs = torch.softmax(model(torch.randn(1, 3, 32, 32))["age"], 1)[0].detach().numpy()
    np.testing.assert_allclose(probs, prior, rtol=1e-5)


def test_fairness_summary_on_constructed_predictions():
    labels = mt.label_space("utkface")
    pred = pd.DataFrame({"gender": [0, 0, 1, 1, 0, 0, 1, 1], "race": [0, 0, 0, 0, 1, 1, 1, 1]})
    pred["pred_gender"] = [0, 0, 1, 0, 0, 0, 1, 1]  # race 0 females: 1 of 2; everyone else right
    pred["pred_race"] = pred["race"]
    pred["age"] = pred["pred_age"] = 3
    summary = mt.fairness_summary(pred, labels)
    assert summary.loc["gender", "worst group"] == "White / Female"
    assert summary.loc["gender", "worst group accuracy"] == 0.5
    assert summary.loc["gender", "largest gap"] == 0.5
    assert summary.loc["gender", "TPR gap across races"] == 0.5
    assert summary.loc["race", "largest gap"] == 0.0
    table = mt.fairness_table(pred, labels)
    assert table.loc["White", "Female"] == 0.5 and table.loc["all", "all"] == pytest.approx(7 / 8)


def test_metrics_fn_scores_the_validation_pass_as_val_columns():
    """metrics_fn(age_mode) turns the outputs and targets of a validation pass into ``val_<metric>`` columns:
    the task metrics of the decoded predictions, balanced race accuracy included."""
    outputs = {"gender": torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]]),
               "race": torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, 0.0]]),
               "age": torch.tensor([24.0, 30.0, 60.0, 5.0])}
    targets = _targets([0, 1, 1, 0], [0, 1, 1, 0], [3, 3, 7, 1], [24.5, 24.5, 64.5, 6.0])
    scores = mt.metrics_fn("regression")(outputs, targets)
    assert set(scores) == {f"val_{k}" for k in mt.task_metrics(mt._table(outputs, targets, "regression"))}
    assert scores["val_gender_acc"] == pytest.approx(3 / 4) and scores["val_race_acc"] == pytest.approx(3 / 4)
    assert scores["val_race_balanced_acc"] == pytest.approx((2 / 2 + 1 / 2) / 2)  # race 0: 2/2, race 1: 1/2
    assert scores["val_age_acc"] == pytest.approx(3 / 4)  # 30 years falls in bin 4, not 3
    assert scores["val_age_mae"] == pytest.approx((0.5 + 5.5 + 4.5 + 1.0) / 4)


# ----------------------------------------------------------------------------------------------- learning

@pytest.mark.usefixtures("one_thread")
def test_every_head_beats_chance_on_the_demo_twin(tmp_path):
    """The baseline learns all three tasks on the FairFace demo twin: held-out scores beat chance, gender and
    race also the majority class."""
    data = mt.load("fairface", seed=0)
    recipe = recipes.resolve("08_multitask_fairface")
    assert recipe.profile == "demo" and recipe.image_size == 32
    loaders = mt.make_loaders(data.splits, recipe)
    batch = next(iter(loaders["train"]))
    assert set(batch[1]) == set(mt.TARGETS) and batch[1]["age_years"].dtype == torch.float32
    model = mt.build_model(recipe, data.labels, data.splits["train"])
    loss = mt.build_loss(recipe, data.labels, data.splits["train"])
    cfg = replace(recipe.train, progress=False, tensorboard=False)
    history = engine.fit(model, loaders["train"], loaders["val"], cfg, config.new_run_dir("mt", tmp_path),
                         loss_fn=loss, metrics_fn=mt.metrics_fn(recipe.age_mode))
    assert {"val_gender_acc", "val_race_acc", "val_race_balanced_acc", "val_age_mae"} <= set(history.columns)
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    table = mt.predict_table(model, loaders["test"], recipe.age_mode)
    assert table["path"].tolist() == data.splits["test"]["path"].tolist()
    scores = mt.task_metrics(table)
    chance = mt.chance(data.splits["test"], data.labels)
    majority = mt.no_image(data.splits["train"], data.splits["test"])
    assert scores["gender_acc"] >= max(chance["gender_acc"], majority["gender_acc"]) + 0.1, (scores, majority)
    assert scores["race_acc"] >= max(chance["race_acc"], majority["race_acc"]) + 0.1, (scores, majority)
    assert scores["age_one_off"] >= chance["age_one_off"] + 0.15, (scores, chance)
    assert scores["age_mae"] <= chance["age_mae"] - 5, (scores, chance)


def test_multitask_plots_draw_from_constructed_frames():
    from helpers import metrics, plots

    labels = mt.label_space("utkface")
    rng = np.random.default_rng(0)
    pred = pd.DataFrame({"gender": rng.integers(0, 2, 40), "race": rng.integers(0, 5, 40),
                         "age": rng.integers(0, 9, 40)})
    pred = pred.assign(pred_gender=pred["gender"], pred_race=(pred["race"] + 1) % 5, pred_age=pred["age"],
                       age_years=np.asarray(mt.AGE_MIDPOINTS)[pred["age"]], p_female=rng.uniform(size=40))
    pred["pred_age_years"] = pred["age_years"] + 3
    fig = plots.task_confusions(pred, {"gender": labels.genders, "race": labels.races})
    assert len(fig.axes) == 2
    table = metrics.reliability(mt.gender_probs(pred), pred["gender"])
    assert plots.reliability_diagram(table, 0.1).axes[0].get_title().endswith("(ECE 0.100)")
    bars = plots.error_by_group(mt.age_error_by_bin(pred, labels)).axes[0].patches
    assert all(bar.get_height() == pytest.approx(3.0) for bar in bars)
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "val_loss": [2.1, 1.5],
                            "val_gender_acc": [0.6, 0.7], "train_gender_acc": [0.65, 0.8]})
    fig = plots.task_curves({"a": history, "b": history}, metrics=("gender_acc", "race_acc"))
    assert [len(ax.lines) for ax in fig.axes] == [4, 4, 0]
    truths, guesses = mt.sample_titles(pred.head(3), labels)
    fig = plots.prediction_grid([np.zeros((8, 8, 3))] * 3, truths, guesses, [True, False, True])
    assert [ax.title.get_color() for ax in fig.axes] == ["tab:green", "tab:red", "tab:green"]
