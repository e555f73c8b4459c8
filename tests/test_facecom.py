"""FACECOM with the dual-head model (helpers.facecom, the 09 recipes): the stage schedule exactly, the distortions
in training, Task B scored on unseen people only, the metrics against scikit-learn, the combined score, the
joint loader and the prediction CSVs."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from test_dual_head import DIM, IDS, tiny
from torch.utils.data import DataLoader, Dataset

from helpers import data, engine, facecom, metrics, optim, recipes, verification
from helpers.distortions import DISTORTIONS, RandomDistortion
from helpers.imageio import load_rgb
from helpers.models import freezing
from helpers.submission import SubmissionError

pytestmark = pytest.mark.usefixtures("one_thread")
PARTS = ("backbone.", "gender_head.", "verification_head.", "arcface.")


def stage_rates(model, recipe, stage) -> dict[str, list[float]]:
    """Per part: the distinct learning rates its parameters get in ``stage`` (0.0: frozen)."""
    freezing.freeze(model, stage.freeze, stage.trainable)
    groups = optim.param_groups(model.named_parameters(), replace(recipe.train, **stage.overrides))
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    return {part: sorted({lr.get(id(p), 0.0) for n, p in model.named_parameters() if n.startswith(part)})
            for part in PARTS}


@pytest.mark.parametrize("variant, expected", [
    ("scratch", [{"backbone.": 1e-3, "gender_head.": 1e-3, "verification_head.": 0.0, "arcface.": 0.0},
                 {"backbone.": 1e-3, "gender_head.": 0.0, "verification_head.": 1e-3, "arcface.": 1e-3},
                 {"backbone.": 1e-4, "gender_head.": 1e-4, "verification_head.": 1e-4, "arcface.": 1e-4}]),
    ("seed", [{"backbone.": 0.0, "gender_head.": 5e-5, "verification_head.": 0.0, "arcface.": 0.0},
              {"backbone.": 1e-4, "gender_head.": 0.0, "verification_head.": 3e-4, "arcface.": 3e-4},
              {"backbone.": 5e-6, "gender_head.": 5e-6, "verification_head.": 5e-6, "arcface.": 5e-6}]),
])
def test_stage_schedule_trains_each_part_at_its_rate(variant, expected, monkeypatch):
    monkeypatch.setenv("FACES_PROFILE", "full")
    recipe = recipes.resolve("09_dualhead_facecom", variant)
    stages = recipes.dualhead_stages(recipe)
    assert [(s.name, s.epochs, s.loss, s.data) for s in stages] == [
        ("gender", 15, "gender", "gender"), ("verification", 40, "verification", "verification"),
        ("joint", 8, "joint", "joint")]
    model = tiny()
    for stage, rates in zip(stages, expected, strict=True):
        assert stage_rates(model, recipe, stage) == {part: pytest.approx([lr]) for part, lr in rates.items()}
    schedule = [(s.overrides["scheduler"], s.overrides.get("gamma"), s.overrides["monitor"]) for s in stages]
    assert schedule == [("cosine", None, "val_task_a_f1"), ("cosine", None, "val_task_b_top1"),
                        ("exponential", 0.95, "val_combined")]
    assert all(s.overrides["early_stopping"] for s in stages)


def test_epochs_parameter_is_split_over_the_stages():
    assert recipes.split_epochs(63, (15, 40, 8)) == [15, 40, 8]
    assert recipes.split_epochs(10, (15, 40, 8)) == [3, 6, 1]
    assert recipes.split_epochs(3, (15, 40, 8)) == [1, 1, 1]
    with pytest.raises(ValueError, match="at least 3"):
        recipes.split_epochs(2, (15, 40, 8))
    recipe = recipes.resolve("09_dualhead_facecom", epochs=21)  # the demo's stages are 6 + 6 + 3
    assert [s.epochs for s in recipes.dualhead_stages(recipe)] == [9, 8, 4]
    single = recipes.single_task_stages(recipe)  # each task's own stage plus the joint stage
    assert {name: [s.epochs for s in st] for name, st in single.items()} == {"gender only": [13],
                                                                             "verification only": [12]}


# ----------------------------------------------------------------------------------------- training, tiny

class Rows(Dataset):
    """Vectors with a target per row: a label, or ``{"person", "clean"}`` for evaluation people."""

    def __init__(self, x, target):
        self.x, self.target = x, target

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        target = {k: v[i] for k, v in self.target.items()} if isinstance(self.target, dict) else self.target[i]
        return self.x[i], target


def tiny_loaders(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(IDS + 2, DIM, generator=g) * 3

    def people(ids, per):
        person = torch.arange(len(ids)).repeat_interleave(per)
        return centres[torch.tensor(ids)[person]] + torch.randn(len(person), DIM, generator=g), person

    xa, ya = torch.randn(48, DIM, generator=g), torch.randint(0, 2, (48,), generator=g)
    xa[:, 0] += 3 * ya
    xb, yb = people(list(range(IDS)), 8)
    xd, pd_ = people([IDS, IDS + 1], 6)
    clean = (torch.arange(len(pd_)) % 3 == 0).long()

    def loader(ds, train):
        return DataLoader(ds, batch_size=8, shuffle=train, generator=torch.Generator() if train else None)
    train = {"gender": loader(Rows(xa, ya), True), "identity": loader(Rows(xb, yb), True)}
    dev = {"gender": loader(Rows(xa[:16], ya[:16]), False),
           "identity": loader(Rows(xd, {"person": pd_, "clean": clean}), False)}

    def per_stage(parts, pad):
        return {"gender": facecom.TaskZip({"gender": parts["gender"]}, pad),
                "verification": facecom.TaskZip({"identity": parts["identity"]}, pad),
                "joint": facecom.TaskZip(parts, pad)}
    return per_stage(train, False), per_stage(dev, True), ya


def test_three_stages_train_only_what_each_stage_names_and_resume_skips_them(tmp_path, monkeypatch):
    recipe = recipes.resolve("09_dualhead_facecom").with_values(progress=False, tensorboard=False, epochs=6,
                                                                channels_last=False)
    stages = [replace(s, epochs=2) for s in recipes.dualhead_stages(recipe)]
    stages = [replace(s, overrides={**s.overrides, "early_stopping": None}) for s in stages]
    model, (train, val, labels) = tiny(), tiny_loaders()
    before, snapshots = {n: p.detach().clone() for n, p in model.named_parameters()}, []
    original = engine.fit

    def fit_and_snapshot(*args, **kwargs):
        history = original(*args, **kwargs)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return history
    monkeypatch.setattr(engine, "fit", fit_and_snapshot)  # fit_stages calls engine.fit once per stage
    history = facecom.fit(model, recipe, train, val, stages, tmp_path, labels)
    monkeypatch.undo()
    moved = [{part for part in PARTS if any(not torch.equal(after[n], start[n]) for n in after if n.startswith(part))}
             for start, after in zip([before, *snapshots], snapshots)]
    assert moved == [{"backbone.", "gender_head."}, {"backbone.", "verification_head.", "arcface."}, set(PARTS)]
    assert history["stage"].tolist() == [1, 1, 2, 2, 3, 3]
    joint = history[history.stage == 3]
    assert joint["lr"].tolist() == pytest.approx([recipe.train.lr * 0.5, recipe.train.lr * 0.5 * 0.8])
    assert {"val_task_a_f1", "val_task_b_top1", "val_combined"} <= set(history.columns)
    assert history.loc[history.stage == 1, "val_task_b_top1"].isna().all()  # stage 1 scores Task A only
    assert joint["val_combined"].notna().all()
    again = facecom.fit(tiny(1), recipe, train, val, stages, tmp_path, labels, resume=True)
    assert again["train_loss"].tolist() == pytest.approx(history["train_loss"].tolist())


def test_task_zip_pairs_batches_and_pads_for_evaluation():
    a = DataLoader(Rows(torch.arange(10.0)[:, None], torch.zeros(10, dtype=torch.long)), batch_size=4)
    b = DataLoader(Rows(torch.arange(6.0)[:, None], {"person": torch.arange(6), "clean": torch.ones(6)}), batch_size=4)
    training = list(facecom.TaskZip({"gender": a, "identity": b}))
    assert len(training) == 2 and all(set(x) == {"gender", "identity"} for x, _ in training)
    padded = list(facecom.TaskZip({"gender": a, "identity": b}, pad=True))
    assert len(padded) == 3
    assert sum(len(x["gender"]) for x, _ in padded) == 10 and sum(len(x["identity"]) for x, _ in padded) == 6
    assert set(padded[-1][1]) == {"gender", "person", "clean"} and len(padded[-1][1]["person"]) == 0


# ------------------------------------------------------------------------------------ data and distortion

def test_training_transform_adds_the_seven_facecom_distortions():
    recipe = recipes.get("09_dualhead_facecom").with_values(image_size=32)  # the full recipe's augmentation
    steps = facecom.train_transform(recipe, "imagenet").transforms
    assert isinstance(steps[0], RandomDistortion)
    assert steps[0].p == recipe.distortion_p == 0.5 and tuple(steps[0].kinds) == DISTORTIONS
    assert type(steps[1]).__name__ == "RandomPerspective" and steps[1].p == 0.3
    image = load_rgb(facecom_b()["val"]["path"].iloc[0])
    assert facecom.train_transform(recipe, "imagenet")(image).shape == (3, 32, 32)


def facecom_b():
    return facecom.task_b_splits(data.load("facecom_b"), 0.25, seed=0)


def test_loaders_use_the_09_augmentation_and_score_dev_people_without_training_classes():
    recipe = recipes.resolve("09_dualhead_facecom")
    parts_a = facecom.task_a_splits(data.load("facecom_a"), recipe.dev_fraction)
    parts_b = facecom_b()
    train, val = facecom.make_loaders(parts_a, parts_b, recipe, "imagenet")
    assert isinstance(train["joint"].loaders["identity"].dataset.transform.transforms[0], RandomDistortion)
    _, targets = next(iter(val["joint"]))
    assert set(targets) == {"gender", "person", "clean"}  # no "identity": no ArcFace class for unseen people


def test_task_b_splits_keep_people_apart():
    parts = facecom_b()
    names = {split: set(frame["identity"]) for split, frame in parts.items()}
    assert not names["train"] & names["dev"] and not names["train"] & names["val"] and not names["dev"] & names["val"]
    assert sorted(parts["train"]["label"].unique()) == list(range(len(names["train"])))
    assert set(parts["val"]["distortion"]) == {"clean", *DISTORTIONS}
    val = parts["val"]
    assert (val.loc[val.clean == 1, "source"] == val.loc[val.clean == 1, "path"].map(lambda p: p.rsplit("/", 1)[1][:-4])).all()


def test_gallery_matching_on_unseen_people_is_what_is_scored():
    """A model that separates its training people perfectly (a classifier over them would score 100%) but maps
    every unseen person to the same point scores chance on Task B: only the embedding of new people counts."""
    def frame(people, split):
        rows = [(f"/{split}/{p}/{p}_{j}.jpg" if kind == "clean" else f"/{split}/{p}/distortion/{p}_{j}_{kind}.jpg",
                 p, kind) for p in people for j in range(2) for kind in ("clean", *DISTORTIONS)]
        return pd.DataFrame(rows, columns=["path", "identity", "distortion"])
    train, val = frame(["a", "b", "c"], "train"), frame(["x", "y", "z"], "val")
    one_hot = {p: torch.eye(3)[i] for i, p in enumerate("abc")}
    store = verification.EmbeddingStore([*train.path, *val.path],
                                        torch.stack([*(one_hot[p] for p in train.identity),
                                                     *(torch.ones(3) for _ in val.identity)]))
    seen = facecom.task_b_matches(store, train)
    assert facecom.identification_scores(seen["identity"], seen["predicted"])["top1"] == 1.0
    unseen = facecom.task_b_matches(store, val)
    assert set(unseen["predicted"]) <= {"x", "y", "z"}  # only the split's own clean images form the gallery
    assert facecom.identification_scores(unseen["identity"], unseen["predicted"])["top1"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------------- metrics

def test_task_a_scores_match_scikit_learn():
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    p = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1])
    scores = facecom.task_a_scores(y, p)
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert scores["precision"] == pytest.approx(skm.precision_score(y, p, average="macro"))
    assert scores["recall"] == pytest.approx(skm.recall_score(y, p, average="macro"))
    assert scores["f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert scores["f1_male"] == pytest.approx(skm.f1_score(y, p))  # male = 1, scikit-learn's positive class
    assert scores["female_recall"] == pytest.approx(2 / 3)


def test_identification_scores_match_scikit_learn_and_chance_is_known():
    truth = ["a", "a", "b", "b", "c", "c", "c"]
    pred = ["a", "b", "b", "b", "c", "a", "c"]
    scores = facecom.identification_scores(truth, pred)
    assert scores["top1"] == pytest.approx(skm.accuracy_score(truth, pred)) == pytest.approx(5 / 7)
    assert scores["macro_f1"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    chance = facecom.chance([1] * 30 + [0] * 10, n_identities=6)
    assert chance["task_a_chance_f1"] == 0.5  # always "male" scores (0 + 6/7) / 2 = 0.43 < 1/2
    assert chance["task_b_chance_top1"] == pytest.approx(1 / 6)
    assert chance["chance_combined"] == pytest.approx(0.3 * 0.5 + 0.7 / 6)
    assert facecom.combined_score(0.9, 0.8) == pytest.approx(0.83)


def test_metrics_fn_scores_dev_people_within_their_own_gallery():
    emb = torch.eye(3)[[0, 0, 1, 1, 2, 2]]
    emb[5] = torch.tensor([0.0, 0.9, 0.1])  # a query of person 2 closest to person 1
    outputs = {"gender": torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 1.0]]), "embedding": emb}
    targets = {"gender": torch.tensor([0, 1, 0]), "person": torch.tensor([0, 0, 1, 1, 2, 2]),
               "clean": torch.tensor([1, 0, 1, 0, 1, 0])}
    scores = facecom.metrics_fn(outputs, targets)
    assert scores["val_task_b_top1"] == pytest.approx(2 / 3)
    assert scores["val_task_a_acc"] == pytest.approx(2 / 3)
    assert scores["val_task_a_f1"] == pytest.approx(skm.f1_score([0, 1, 0], [0, 1, 1], average="macro"))
    assert scores["val_combined"] == pytest.approx(0.3 * scores["val_task_a_f1"] + 0.7 * scores["val_task_b_macro_f1"])
    assert set(facecom.metrics_fn({"gender": outputs["gender"]}, {"gender": targets["gender"]})) == {
        "val_task_a_f1", "val_task_a_acc"}


def synthetic_split(n_people: int = 4, noise: float = 0.0, seed: int = 0):
    """Three clean images per person and each one's seven distorted copies, embedded near the person's point."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_people, 8, generator=g), dim=1)
    rows, vectors = [], []
    for i in range(n_people):
        for j in range(3):
            for kind in ("clean", *DISTORTIONS):
                name = f"p{i}_{j}" if kind == "clean" else f"distortion/p{i}_{j}_{kind}"
                rows.append((f"/val/p{i}/{name}.jpg", f"p{i}", kind))
                vectors.append(centres[i] + noise * torch.randn(8, generator=g))
    frame = pd.DataFrame(rows, columns=["path", "identity", "distortion"])
    return frame, verification.EmbeddingStore(frame.path.tolist(), torch.stack(vectors))


def test_robustness_table_holds_each_probe_out_of_the_gallery():
    frame, store = synthetic_split()
    table = facecom.robustness_table(store, frame)
    assert table.index.tolist() == ["clean", *DISTORTIONS]
    assert (table["probes"] == 4).all() and (table["top1"] == 1.0).all()
    assert np.isnan(table.loc["clean", "official_top1"]) and (table.loc[list(DISTORTIONS), "official_top1"] == 1).all()
    # each person's probe (its last clean image and that image's copies) moves to its own direction, orthogonal
    # to every person's point, tilted slightly away from its own person: held out of the gallery it is nearer to
    # everyone else (top-1 0); a gallery that kept it would match it to its own person every time (top-1 1)
    points = torch.stack([store[[f"/val/p{i}/p{i}_0.jpg"]][0] for i in range(4)])
    directions = torch.linalg.svd(points).Vh[4:]
    for i in range(4):
        rows = frame.index[frame.path.str.contains(f"/p{i}_2(?:\\.|_)")]
        assert len(rows) == 1 + len(DISTORTIONS)
        store.embeddings[rows] = torch.nn.functional.normalize(directions[i] - 0.1 * points[i], dim=0)
    assert (facecom.robustness_table(store, frame)["top1"] == 0.0).all()


def test_pairs_give_one_match_and_one_other_identity_per_query_and_a_dev_threshold():
    frame, store = synthetic_split(noise=0.3)
    pairs = facecom.match_pairs(store, frame, seed=1)
    queries = frame[frame.distortion != "clean"]
    assert len(pairs) == 2 * len(queries) and pairs["match"].sum() == len(queries)
    impostors = pairs[pairs.match == 0]
    assert (impostors["candidate"].to_numpy() != queries["identity"].to_numpy()).all()
    val = pairs.assign(score=pairs["score"] + 0.2)  # the same pairs scored higher: another best threshold
    dev_threshold = metrics.best_threshold(pairs["match"], pairs["score"])[0]
    assert metrics.best_threshold(val["match"], val["score"])[0] != pytest.approx(dev_threshold)
    report = facecom.pair_report(pairs, val)
    no_clean = frame[~((frame.identity == "p3") & (frame.distortion == "clean"))]
    with pytest.raises(ValueError, match=r"\['p3'\] have no clean image"):  # else matched to a neighbour's centre
        facecom.match_pairs(store, no_clean)
    assert report["threshold"] == pytest.approx(dev_threshold)  # chosen on dev, never on the scored pairs
    assert report["auc"] == pytest.approx(skm.roc_auc_score(val["match"], val["score"]))
    decision = val["score"] >= report["threshold"]
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(val["match"], decision))
    assert report["f1"] == pytest.approx(skm.f1_score(val["match"], decision))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(val["match"], decision, average="macro"))


# ---------------------------------------------------------------------------------------------------- CSVs

def test_csv_writers_write_new_validated_files(tmp_path):
    root = tmp_path / "facecom"
    pred = pd.DataFrame({"path": [str(root / "Task_A/val/male/a.jpg"), str(root / "Task_A/val/female/b.jpg")],
                         "label": [1, 0], "predicted": [1, 1]})
    first, second = facecom.write_task_a(pred, root, tmp_path / "out"), facecom.write_task_a(pred, root, tmp_path / "out")
    assert first != second
    written = pd.read_csv(first)
    assert list(written.columns) == list(facecom.TASK_A_COLUMNS)
    assert written.to_dict("list") == {"image": ["Task_A/val/male/a.jpg", "Task_A/val/female/b.jpg"],
                                       "predicted_label": ["male", "male"], "true_label": ["male", "female"]}
    matches = pd.DataFrame({"path": [str(root / "Task_B/val/x/distortion/x_1_foggy.jpg")], "identity": ["x"],
                            "predicted": ["y"], "score": [0.42]})
    assert pd.read_csv(facecom.write_task_b(matches, ["x", "y"], root, tmp_path / "out")).iloc[0].tolist() == [
        "Task_B/val/x/distortion/x_1_foggy.jpg", "y", "x", 0.42]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.rename(columns={"similarity": "score"}), "header"),
    (lambda f: f.iloc[:0], "no rows"),
    (lambda f: f.assign(image=["a.jpg", "a.jpg"]), "repeated"),
    (lambda f: f.assign(predicted_identity=["x", "nobody"]), "predicted_identity"),
    (lambda f: f.assign(similarity=[0.5, float("nan")]), "finite cosine"),
    (lambda f: f.assign(similarity=[0.5, 1.7]), "finite cosine"),
])
def test_validation_refuses_bad_predictions(change, message):
    good = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "predicted_identity": ["x", "y"], "true_identity": ["x", "x"],
                         "similarity": [0.9, -0.2]})
    facecom.validate_predictions(good, facecom.TASK_B_COLUMNS, ["x", "y"])
    with pytest.raises(SubmissionError, match=message):
        facecom.validate_predictions(change(good), facecom.TASK_B_COLUMNS, ["x", "y"])


def test_task_a_writer_refuses_a_class_outside_the_two_genders(tmp_path):
    pred = pd.DataFrame({"path": [str(tmp_path / "a.jpg")], "label": [1], "predicted": [2]})
    with pytest.raises(SubmissionError, match="predicted_label"):
        facecom.write_task_a(pred, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stage_table_and_imbalance_report_show_known_values(monkeypatch):
    monkeypatch.setenv("FACES_PROFILE", "full")
    recipe = recipes.resolve("09_dualhead_facecom", "seed")
    table = facecom.stage_table(tiny(), recipes.dualhead_stages(recipe))
    assert table.loc["gender", ["lr backbone", "lr gender_head", "lr arcface"]].tolist() == ["frozen", "5e-05", "frozen"]
    assert table.loc["verification", ["lr backbone", "lr verification_head"]].tolist() == ["0.0001", "0.0003"]
    assert table["epochs"].tolist() == [15, 40, 8] and table.loc["joint", "schedule"] == "exponential"
    pred = pd.DataFrame({"label": [0, 0, 1, 1, 1], "predicted": [0, 1, 1, 1, 1]})
    report = facecom.task_a_report([0] * 10 + [1] * 30, pred)
    assert report["train images"].tolist() == [10, 30, 40]
    assert report["loss weight"].iloc[:2].tolist() == pytest.approx([2.0, 2 / 3])
    assert report.loc["female", "recall"] == 0.5 and report.loc["male", "precision"] == 0.75
    unweighted = facecom.task_a_report([0] * 10 + [1] * 30, pred, weighted=False)  # what class_weights=False trains
    assert unweighted["loss weight"].iloc[:2].tolist() == [1.0, 1.0]


def test_joint_effect_compares_each_task_with_its_own_stage_and_single_model():
    rows = ["after stage 1 (gender)", "after stage 2 (verification)", "after stage 3 (joint)", "gender only",
            "verification only"]
    table = pd.DataFrame({"task_a_f1": [0.7, 0.6, 0.75, 0.8, 0.5], "task_b_top1": [0.3, 0.6, 0.55, 0.2, 0.5]},
                         index=rows)
    effect = facecom.joint_effect(table)
    assert effect.loc["Task A F1", "joint - own stage"] == pytest.approx(0.05)
    assert effect.loc["Task A F1", "joint - single-task"] == pytest.approx(-0.05)
    assert effect.loc["Task B top-1", "joint - own stage"] == pytest.approx(-0.05)
    assert effect.loc["Task B top-1", "joint - single-task"] == pytest.approx(0.05)
