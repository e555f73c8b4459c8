"""The Adience protocol of notebook 10 (helpers.adience): subject-disjoint folds and validation split, the task
metrics and references, the models (single and multi-task), CelebA's gender labels, the registry summary, and a
short run that learns gender on the demo twin."""
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import adience, data, demo, recipes
from helpers.losses import MultiTaskLoss
from helpers.models import backbones, freezing
from helpers.models.multitask import MultiTaskModel

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faceset():
    return data.load("adience")


@pytest.fixture(scope="module")
def recipe():
    return recipes.resolve("10_adience_transfer")


def frame(subjects: list[str], fold: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"{s}.jpg" for s in subjects], "user_id": subjects, "fold": fold,
                         "gender": 0, "age": 0})


# ------------------------------------------------------------------------------------------ protocol

def test_official_demo_folds_are_subject_disjoint(faceset):
    assert adience.shared_subjects(faceset.splits) == {}
    table = adience.fold_table(faceset)
    assert table.index.tolist() == [f"fold_{k}" for k in range(5)]
    assert (table[list(adience.TASKS["age"])].sum(axis=1) == table["images"]).all()


@pytest.mark.parametrize("test_fold", range(5))
def test_split_tests_on_one_fold_and_validates_on_training_subjects(faceset, test_fold):
    parts = adience.split(faceset, test_fold, 0.2, seed=0)
    assert len(parts["test"]) == len(faceset[f"fold_{test_fold}"]) and set(parts["test"]["fold"]) == {test_fold}
    assert test_fold not in set(parts["train"]["fold"]) | set(parts["val"]["fold"])
    assert adience.shared_subjects(parts) == {}
    assert len(parts["train"]) + len(parts["val"]) + len(parts["test"]) == sum(map(len, faceset.splits.values()))
    assert parts["val"]["user_id"].nunique() >= 2
    assert adience.split(faceset, test_fold, 0.2, seed=0)["val"].equals(parts["val"])  # reproducible


def test_subject_split_never_cuts_a_subject():
    rows = frame([f"u{k // 3}" for k in range(60)])  # 20 subjects x 3 images
    rest, held = adience.subject_split(rows, 0.25, seed=1)
    assert not set(rest["user_id"]) & set(held["user_id"])
    assert held["user_id"].nunique() == 5 and len(held) == 15


def test_check_disjoint_names_the_shared_subjects():
    with pytest.raises(ValueError, match="train and test: 1 subject"):
        adience.check_disjoint({"train": frame(["a", "b"]), "val": frame(["c"]), "test": frame(["b", "d"])})


def test_folds_parameter():
    assert adience.folds_of(5) == [0, 1, 2, 3, 4] and adience.folds_of(2) == [0, 1]
    assert adience.folds_of([3, 1]) == [3, 1]
    for bad in (0, 6, [5], [1, 1]):
        with pytest.raises(ValueError, match="FOLDS"):
            adience.folds_of(bad)


# ------------------------------------------------------------------------------------------- metrics

def test_task_metrics_and_references_on_constructed_predictions():
    pred = pd.DataFrame({"gender": [0, 1, 1, 0], "pred_gender": [0, 1, 0, 0],
                         "age": [0, 3, 5, 7], "pred_age": [1, 3, 7, 7]})
    assert adience.task_metrics(pred) == {"gender_acc": 0.75, "age_acc": 0.5, "age_one_off": 0.75}
    parts = {"train": frame(list("abc")).assign(gender=[1, 1, 0], age=[2, 2, 5]),
             "test": frame(list("de")).assign(gender=[1, 0], age=[0, 3])}
    refs = adience.references(parts)
    assert refs["majority_gender_acc"] == 0.5 and refs["majority_age_acc"] == 0.0
    assert refs["majority_age_one_off"] == 0.5  # majority group 2 is one off group 3
    assert refs["chance_age_one_off"] == pytest.approx(np.mean([2 / 8, 3 / 8]))  # group 0 has one neighbour


def test_prediction_table_reads_single_and_multi_task_outputs():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    single = adience.prediction_table(logits, torch.tensor([0, 0]), ("gender",))
    assert single["pred_gender"].tolist() == [0, 1] and single["p_female"].iloc[1] > 0.9
    age = torch.zeros(2, 8)
    age[0, 5] = age[1, 2] = 1.0
    multi = adience.prediction_table({"gender": logits, "age": age},
                                     {"gender": torch.tensor([0, 1]), "age": torch.tensor([5, 3])}, ("gender", "age"))
    assert adience.task_metrics(multi) == {"gender_acc": 1.0, "age_acc": 0.5, "age_one_off": 1.0}


# -------------------------------------------------------------------------------------------- models

def test_single_and_multi_task_models_share_the_head_shape(recipe):
    single, info = adience.build_model(recipe, ("gender",))
    multi, _ = adience.build_model(recipe, ("gender", "age"))
    assert isinstance(single, backbones.FaceClassifier) and isinstance(multi, MultiTaskModel)
    assert info.norm == "imagenet"
    x = torch.randn(2, 3, recipe.image_size, recipe.image_size)
    assert single.eval()(x).shape == (2, 2)
    out = multi.eval()(x)
    assert set(out) == {"gender", "age"} and out["gender"].shape == (2, 2) and out["age"].shape == (2, 8)
    widths = [m.out_features for m in multi.shared if isinstance(m, torch.nn.Linear)]
    assert widths == list(recipe.head) == [m.out_features for m in single.head.hidden if isinstance(m, torch.nn.Linear)]
    loss = adience.loss_fn(recipe, ("gender", "age"))
    assert adience.loss_fn(recipe, ("gender",)) is None
    value = loss(out, {"gender": torch.tensor([0, 1]), "age": torch.tensor([3, 7])})  # no race, no years needed
    assert torch.isfinite(value) and set(loss.last) == {"gender", "age"}


def test_initial_weights_do_not_depend_on_what_ran_before(recipe):
    """Notebook 10 builds one model per experiment and fold: each must start from the recipe's seed, not from
    whatever the global generator reached (it made the demo's multi-task score depend on the cell order)."""
    first, _ = adience.build_model(recipe, ("gender", "age"))
    torch.randn(1000)
    second, _ = adience.build_model(recipe, ("gender", "age"))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_multitask_loss_on_a_subset_names_what_is_missing():
    loss = MultiTaskLoss(age_mode="classification", tasks=("gender", "age"))
    with pytest.raises(KeyError) as err:
        loss({"gender": torch.zeros(1, 2), "age": torch.zeros(1, 8)}, {"gender": torch.tensor([0])})
    assert "targets['age']" in err.value.args[0] and "race" not in err.value.args[0]
    with pytest.raises(ValueError, match="tasks"):
        MultiTaskLoss(tasks=("gender", "height"))


def test_first_n_policy_freezes_the_first_layers_only():
    """The seed's Inception-v3 with its first layers frozen: ("first", 32) = stem, Mixed_5b and four convs of
    Mixed_5c, each conv with its batch norm."""
    model = backbones.create_model("inception_v3", 2, head=[16, 8])
    counts = freezing.freeze(model, recipes.get("10_adience_transfer", "inception_v3").freeze)
    layers = freezing.layers(model.backbone)
    assert counts["trainable_layers"] == len(layers) - 32
    assert not any(p.requires_grad for _, layer in layers[:32] for p in layer.parameters(recurse=False))
    assert all(p.requires_grad for _, layer in layers[32:] for p in layer.parameters(recurse=False))
    assert layers[31][0] == "Mixed_5c.branch3x3dbl_1.bn" and all(p.requires_grad for p in model.head.parameters())
    assert freezing.trainable_layers(("first", 500), 10) == 0


@pytest.mark.parametrize("kaggle", [False, True], ids=["torchvision", "kaggle"])
def test_celeba_gender_uses_adience_order(tmp_path, kaggle):
    faceset = data.load("celeba", demo.make_celeba(tmp_path / "celeba", kaggle=kaggle))
    frames = adience.celeba_frames(faceset, fraction=0.5)
    assert (frames["train"]["gender"] == 1 - faceset["train"].set_index("path").loc[frames["train"]["path"], "Male"]
            .to_numpy()).all()  # 0 male, 1 female, as Adience's m, f
    assert len(frames["train"]) == round(0.5 * len(faceset["train"])) and len(frames["val"]) == len(faceset["valid"])


# ---------------------------------------------------------------------------------- summary, registry

def fold_result(fold: int, scores: dict, refs: dict | None = None) -> adience.FoldResult:
    history = pd.DataFrame({"epoch": [1], "time_s": [2.0], "train_images_per_s": [100.0]})
    return adience.FoldResult(fold, history, scores, refs or {"chance_gender_acc": 0.5}, pd.DataFrame(), 10, None)


def test_summary_and_registry_metrics_average_over_folds():
    results = {"multitask": [fold_result(0, {"gender_acc": 0.8, "age_acc": 0.4, "age_one_off": 0.7}),
                             fold_result(1, {"gender_acc": 0.6, "age_acc": 0.2, "age_one_off": 0.5})],
               "direct": [fold_result(0, {"gender_acc": 0.9}), fold_result(1, {"gender_acc": 0.7})]}
    table = adience.summary(results)
    assert table.loc["direct", "gender_acc"] == pytest.approx(0.8)
    assert table.loc["direct", "gender_acc_std"] == pytest.approx(0.1) and table.loc["direct", "folds"] == 2
    assert adience.formatted(table).loc["multitask", "age_one_off"] == "60.0 ± 10.0"
    flat = adience.registry_metrics(results)
    assert flat["gender_acc"] == pytest.approx(0.8)  # the headline comes from "direct"
    assert flat["age_one_off"] == pytest.approx(0.6)  # no "age" experiment: the multi-task one
    assert flat["multitask_gender_acc"] == pytest.approx(0.7) and flat["chance_gender_acc"] == 0.5


def test_record_names_the_search_fold_and_scores_it_apart(recipe):
    """The search trains on the search fold's training folds (the other folds' test images): that fold's own
    score is the one figure untouched by the choice of settings, so it is recorded apart."""
    results = {"direct": [fold_result(0, {"gender_acc": 0.9}), fold_result(1, {"gender_acc": 0.7})]}
    entry = adience.record(recipe, results, search_fold=1)
    assert entry["settings"]["search_fold"] == 1 and entry["metrics"]["gender_acc_search_fold"] == 0.7
    assert entry["metrics"]["gender_acc"] == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------- learning

def test_gender_is_learned_on_a_held_out_fold(faceset, recipe, tmp_path):
    """The notebook's direct experiment on the demo twin: held-out subjects, accuracy far above chance (0.5) and
    above always answering the training folds' majority gender."""
    parts = adience.split(faceset, 0, recipe.val_fraction, recipe.train.seed)
    result = adience.run_fold(adience.EXPERIMENTS["direct"], recipe.with_values(lr=5e-3, head=(128, 64)), parts,
                              tmp_path / "fold_0")
    assert result.metrics["gender_acc"] >= 0.75
    assert result.metrics["gender_acc"] >= result.references["majority_gender_acc"] + 0.1
    assert (tmp_path / "fold_0" / "best.pt").is_file() and len(result.predictions) == len(parts["test"])
