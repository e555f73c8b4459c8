"""Embedding head, embeddings with flip TTA, chunked similarity, open-set identification, pair scoring, and
the two models of notebook 07 (softmax and ArcFace, from scratch or from a notebook-03 run)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from helpers import verification
from helpers.datasets.constants import HW2P2_NO_MATCH
from helpers.imageio import BadImageError
from helpers.models import backbones, heads


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.num_features = 8
    return backbone


@pytest.mark.parametrize("make_backbone", [tiny_backbone, lambda: backbones.create_backbone(
    "scratch/convnext_atto")[0]], ids=["sequential", "convnext_features"])
def test_embedding_head_gives_unit_vectors_and_trains(make_backbone):
    torch.manual_seed(0)
    backbone = make_backbone()
    model = nn.Sequential(backbone, heads.EmbeddingHead(backbone.num_features, dim=512, dropout=0.2))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    out[:, 0].sum().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []  # every layer learns
    assert heads.EmbeddingHead(8, dim=16, normalize=False).eval()(torch.randn(3, 8)).norm(dim=1).max() > 1.01


def test_embed_with_flip_tta_is_mirror_invariant_and_normalised():
    torch.manual_seed(0)
    images = torch.randn(10, 3, 16, 16)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 6))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(10)), batch_size=4)
    mirrored = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images.flip(-1), torch.arange(10)),
                                           batch_size=4)
    emb = verification.embed(model, loader, flip_tta=True, amp="off", progress=False)
    torch.testing.assert_close(emb, verification.embed(model, mirrored, amp="off", progress=False))
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(10))
    plain = verification.embed(model, loader, flip_tta=False, amp="off", normalize=False, progress=False)
    torch.testing.assert_close(plain, model(images))
    assert not torch.allclose(F.normalize(plain, dim=1), emb)


@pytest.mark.parametrize("training", [True, False])
def test_embed_leaves_the_model_in_its_own_mode(training):
    """A later hand-written forward pass must not run with dropout/BatchNorm in the wrong mode."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.Dropout(0.5)).train(training)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3, 4, 4), torch.arange(4)))
    verification.embed(model, loader, flip_tta=True, amp="off", progress=False)
    assert all(m.training == training for m in model.modules())


@pytest.mark.parametrize("metric", verification.METRICS)
def test_chunked_top1_equals_dense(metric):
    g = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(203, 32, generator=g), torch.randn(57, 32, generator=g) * 2
    dense = verification.similarity(queries, gallery, metric)
    index, score = verification.top1(queries, gallery, metric, chunk_bytes=4 * 57 * 10, progress=False)
    torch.testing.assert_close(score, dense.max(1).values)
    torch.testing.assert_close(index, dense.argmax(1))
    reference = F.cosine_similarity(queries[:, None], gallery[None], dim=2) if metric == "cosine" else \
        -(queries[:, None] - gallery[None]).norm(dim=2)
    torch.testing.assert_close(dense, reference, rtol=1e-4, atol=1e-4)
    rows = verification.pair_scores(queries[:57], gallery, metric)
    torch.testing.assert_close(rows, reference[torch.arange(57), torch.arange(57)], rtol=1e-4, atol=1e-4)


def test_cosine_and_euclidean_rank_unit_vectors_alike():
    g = torch.Generator().manual_seed(1)
    queries, gallery = F.normalize(torch.randn(40, 16, generator=g)), F.normalize(torch.randn(30, 16, generator=g))
    cos_index, _ = verification.top1(queries, gallery, "cosine", progress=False)
    euc_index, _ = verification.top1(queries, gallery, "euclidean", progress=False)
    assert torch.equal(cos_index, euc_index)


def planted_world(n_known: int = 20, per_identity: int = 3, n_queries: int = 120, seed: int = 0):
    """Known identities with gallery images, and queries of which a third are planted unknowns."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_known + n_queries, 64, generator=g))
    names = np.array([f"n{i + 1:06d}" for i in range(n_known)])
    ids = np.repeat(np.arange(n_known), per_identity)
    gallery = F.normalize(centres[ids] + 0.08 * torch.randn(len(ids), 64, generator=g))
    who = torch.randint(0, n_known, (n_queries,), generator=g)
    unknown = torch.rand(n_queries, generator=g) < 1 / 3
    who[unknown] = n_known + torch.arange(n_queries)[unknown]  # fresh identities, absent from the gallery
    queries = F.normalize(centres[who] + 0.08 * torch.randn(n_queries, 64, generator=g))
    truth = np.where(unknown.numpy(), HW2P2_NO_MATCH, names[np.minimum(who.numpy(), n_known - 1)])
    return gallery, names[ids], queries, truth


@pytest.mark.parametrize("mode", verification.GALLERY_MODES)
def test_open_set_identification_maps_planted_unknowns_to_no_match(mode):
    gallery_emb, gallery_ids, queries, truth = planted_world()
    gallery, names = verification.build_gallery(gallery_emb, gallery_ids, mode)
    assert len(gallery) == (20 if mode == "mean" else 60)
    dev, test = slice(0, 60), slice(60, None)
    found = verification.identify(queries[dev], gallery, names)
    threshold, accuracy, curve = verification.choose_threshold(found["nearest"], found["score"], truth[dev])
    assert accuracy == curve["accuracy"].max() >= 0.95
    assert curve["accuracy"].iloc[0] == pytest.approx(np.mean(truth[dev] != HW2P2_NO_MATCH))  # accept all
    assert curve["accuracy"].iloc[-1] == pytest.approx(np.mean(truth[dev] == HW2P2_NO_MATCH))  # reject all
    mapped = verification.identify(queries[test], gallery, names, threshold)["identity"].to_numpy()
    assert np.mean(mapped == truth[test]) >= 0.95
    assert (mapped[truth[test] == HW2P2_NO_MATCH] == HW2P2_NO_MATCH).mean() >= 0.95


def test_threshold_curve_matches_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.choice([0.1, 0.2, 0.3, 0.5, 0.8], 50)  # ties on purpose
    nearest = rng.choice(["a", "b"], 50)
    truth = rng.choice(["a", "b", HW2P2_NO_MATCH], 50)
    curve = verification.threshold_curve(nearest, scores, truth)
    for t, acc in zip(curve["threshold"], curve["accuracy"]):
        assert acc == pytest.approx(np.mean(np.where(scores >= t, nearest, HW2P2_NO_MATCH) == truth))
    assert len(curve) == 6


def test_mean_gallery_renormalises_unit_embeddings():
    emb = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    gallery, names = verification.build_gallery(emb, ["b", "b", "a"], "mean")
    assert list(names) == ["a", "b"]
    torch.testing.assert_close(gallery, torch.tensor([[-1.0, 0.0], [2 ** -0.5, 2 ** -0.5]]))
    with pytest.raises(ValueError, match="mode"):
        verification.build_gallery(emb, ["a", "b", "c"], "median")


def image_files(folder, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_pair_scores_embed_each_file_once(tmp_path):
    paths = image_files(tmp_path, 4)
    pairs = pd.DataFrame({"path1": [paths[0], paths[1], paths[2]], "path2": [paths[0], paths[3], paths[1]]})
    calls = []
    backbone = tiny_backbone()
    backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    store = verification.embed_store(backbone, verification.image_paths(pairs), image_size=32, batch_size=8,
                                     flip_tta=False, amp="off", progress=False)
    scores = verification.store_pair_scores(store, pairs)
    assert scores.shape == (3,) and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert sum(calls) == 4 and len(store) == 4  # four distinct files
    with pytest.raises(ValueError, match="path1, path2"):
        verification.store_pair_scores(store, pairs.rename(columns={"path1": "a"}))


def test_embed_paths_keeps_the_order_and_normalisation(tmp_path):
    """Row i embeds paths[i] at ``image_size`` with the given normalisation (the eval transform)."""
    paths = image_files(tmp_path, 5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    forward = verification.embed_paths(model, paths, 16, batch_size=2, flip_tta=False, amp="off",
                                       normalize=False, progress=False)
    backward = verification.embed_paths(model, paths[::-1], 16, batch_size=3, flip_tta=False, amp="off",
                                        normalize=False, progress=False)
    torch.testing.assert_close(forward, backward.flip(0))
    facenet = verification.embed_paths(model, paths, 16, norm="facenet", flip_tta=False, amp="off",
                                       normalize=False, progress=False)
    assert not torch.allclose(forward, facenet)


def test_an_unreadable_file_is_an_error_naming_it(tmp_path):
    paths = image_files(tmp_path, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(BadImageError, match="broken.jpg"):
        verification.embed_paths(tiny_backbone(), [*paths, str(broken)], 32, amp="off", progress=False)


def test_embedding_head_on_factory_backbones():
    backbones = pytest.importorskip("helpers.models.backbones")
    for name in ("scratch/convnext_atto", "resnet18"):
        backbone, _ = backbones.create_backbone(name, pretrained=False)
        model = nn.Sequential(backbone, heads.EmbeddingHead(backbone.num_features)).eval()
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 512)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def planted_frames(tmp_path):
    """Reader-like frames (known, unknown_dev, pairs) over fake paths, with a store of planted embeddings."""
    gallery_emb, gallery_ids, queries, truth = planted_world()
    known = pd.DataFrame({"path": [str(tmp_path / f"k{i}.jpg") for i in range(len(gallery_ids))],
                          "identity": gallery_ids})
    dev = pd.DataFrame({"path": [str(tmp_path / f"q{i}.jpg") for i in range(len(truth))], "identity": truth})
    store = verification.EmbeddingStore([*known.path, *dev.path], torch.cat([gallery_emb, queries]))
    same = dev.identity != HW2P2_NO_MATCH
    pairs = pd.DataFrame({"path1": dev.path, "path2": [known.path[known.identity == who].iloc[0] if ok else
                                                       known.path.iloc[i % len(known)]
                                                       for i, (who, ok) in enumerate(zip(dev.identity, same))],
                          "match": same.astype(int)})
    return store, known, dev, pairs


def test_store_report_and_comparison(tmp_path):
    store, known, dev, pairs = planted_frames(tmp_path)
    assert verification.image_paths(known, pairs) == [*known.path, *dev.path]
    torch.testing.assert_close(store[[dev.path[3], known.path[0]]], store.embeddings[[60 + 3, 0]])
    with pytest.raises(KeyError, match="was not embedded"):
        store[["elsewhere.jpg"]]
    summary, curve = verification.open_set_report(store, known, dev)
    assert summary["open_set_acc"] >= 0.95 and summary["open_set_acc_cv"] >= 0.9 and summary["rank1_known"] == 1.0
    assert summary["no_match_share"] == pytest.approx(np.mean(dev.identity == HW2P2_NO_MATCH))
    assert curve["accuracy"].max() == summary["open_set_acc"]
    mapped = verification.map_queries(store, known, dev, summary["threshold"])
    assert np.mean(mapped["identity"] == dev["identity"]) == pytest.approx(summary["open_set_acc"])
    table = verification.compare({"planted": store}, known, dev, pairs)
    assert list(table.index) == [("planted", "cosine"), ("planted", "euclidean")]
    assert (table["pairs_auc"] > 0.95).all() and (table["open_set_acc"] >= 0.95).all()


def test_cross_validated_accuracy_is_not_flattered():
    in_sample, held_out = [], []
    for seed in range(20):  # scores that carry no information: the honest accuracy is 50%
        rng = np.random.default_rng(seed)
        truth = rng.permutation(np.repeat(["a", HW2P2_NO_MATCH], 30))
        nearest, scores = np.full(60, "a"), rng.random(60)
        in_sample.append(verification.choose_threshold(nearest, scores, truth)[1])
        held_out.append(verification.cross_validated_accuracy(nearest, scores, truth))
    assert np.mean(in_sample) > np.mean(held_out) + 0.03
    assert np.mean(held_out) == pytest.approx(0.5, abs=0.05)


@pytest.mark.usefixtures("one_thread")
def test_notebook_07_fine_tunes_the_latest_notebook_03_run(tmp_path, monkeypatch):
    """Notebook 07 starts both models from the best checkpoint of the newest notebook-03 run (its model and
    norm read from that run's config.json), and trains the body at backbone_lr_scale only when fine-tuning."""
    from helpers import classification, config, engine, recipes

    monkeypatch.setenv("FACES_RUNS", str(tmp_path))
    monkeypatch.setenv("FACES_PROFILE", "demo")
    assert recipes.resolve("07_arcface_verification").init_from is None  # the demo trains from scratch
    with pytest.raises(FileNotFoundError, match="run that notebook first"):  # nothing trained yet
        config.find_run("03_convnext_from_scratch", "latest")

    notebook_03 = recipes.resolve("03_convnext_from_scratch")
    trained = classification.build_model(notebook_03, 5)
    x, y = torch.randn(32, 3, 32, 32), torch.arange(32) % 5
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    run_dir = config.new_run_dir("03_convnext_from_scratch")
    cfg = engine.TrainConfig(epochs=1, lr=1e-2, ema_decay=0.5, progress=False, tensorboard=False)
    engine.fit_stages(trained, loader, loader, cfg, run_dir, [engine.Stage("all", 1)],
                      meta=notebook_03.record())
    init_dir = config.find_run("03_convnext_from_scratch", "latest")
    assert init_dir == run_dir
    best = engine.checkpoint.model_weights(engine.load_checkpoint(run_dir / "best.pt"))  # the EMA weights
    backbone, info = verification.init_backbone(init_dir)
    assert info.name == "scratch/convnext_atto"
    torch.testing.assert_close(backbone.stem[0].weight, best["backbone.stem.0.weight"])

    recipe = recipes.get("07_arcface_verification").with_values(backbone="scratch/convnext_atto")
    softmax, arcface = verification.build_models(recipe, 7, init_dir)
    for model in (softmax, arcface):
        torch.testing.assert_close(model.backbone.stem[0].weight, best["backbone.stem.0.weight"])
    assert softmax(x[:2]).shape == (2, 7) and arcface(x[:2]).shape == (2, 7)
    assert arcface.arcface.s == recipe.s and arcface.head.num_features == recipe.embedding_dim
    assert verification.train_config(recipe, init_dir).param_groups == {"backbone.": 0.1}
    assert verification.train_config(recipe, None).param_groups == {}  # from scratch: one rate
    scratch, _ = verification.build_models(recipe, 7, None)
    assert not torch.equal(scratch.backbone.stem[0].weight, best["backbone.stem.0.weight"])


@pytest.mark.usefixtures("one_thread")
def test_notebook_07_trains_both_models_from_the_same_start(tmp_path):
    from helpers import engine, recipes

    recipe = recipes.get("07_arcface_verification").for_profile().with_values(
        epochs=1, embedding_dim=16, progress=False, tensorboard=False)
    softmax, arcface = verification.build_models(recipe, 4, None)
    torch.testing.assert_close(softmax.backbone.stem[0].weight, arcface.backbone.stem[0].weight)
    x, y = torch.randn(48, 3, 32, 32), torch.arange(48) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    histories = verification.train({"softmax": softmax, "arcface": arcface}, {"train": loader, "dev": loader},
                                   recipe, tmp_path)
    assert set(histories) == {"softmax", "arcface"} and all(len(h) == 1 for h in histories.values())
    for name, model in (("softmax", softmax), ("arcface", arcface)):
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["meta"]["notebook"] == "07_arcface_verification" and saved["meta"]["init_from"] == "None"
        best = engine.checkpoint.model_weights(engine.load_checkpoint(tmp_path / name / "best.pt"))
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in best.items())  # each ends on its best.pt
    losses = {name: json.loads((tmp_path / name / "config.json").read_text())["loss_fn"]
              for name in histories}
    assert "ArcFaceModel.loss" in losses["arcface"] and losses["softmax"].startswith("CrossEntropyLoss")
