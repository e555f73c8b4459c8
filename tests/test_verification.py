"""Embedding head, embeddings with flip TTA, chunked similarity, open-set identification, pair scoring."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from helpers import transforms, verification
from helpers.datasets.constants import HW2P2_NO_MATCH
from helpers.models import convnext, heads


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.num_features = 8
    return backbone


@pytest.mark.parametrize("make_backbone", [tiny_backbone, lambda: heads.PreLogits(convnext.create(
    "convnext_atto", num_classes=5))], ids=["sequential", "convnext_prelogits"])
def test_embedding_head_gives_unit_vectors_and_trains(make_backbone):
    torch.manual_seed(0)
    backbone = make_backbone()
    model = nn.Sequential(backbone, heads.EmbeddingHead(backbone.num_features, dim=512, dropout=0.2))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    out[:, 0].sum().backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None]
    assert all("head.fc" in name for name in no_grad)  # only the classifier's unused last Linear
    assert heads.EmbeddingHead(8, dim=16, normalize=False).eval()(torch.randn(3, 8)).norm(dim=1).max() > 1.01


def test_prelogits_rejects_models_without_forward_head():
    with pytest.raises(TypeError, match="forward_head"):
        heads.PreLogits(nn.Linear(3, 3))


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


def test_score_pairs_embeds_each_file_once(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    pairs = pd.DataFrame({"path1": [paths[0], paths[1], paths[2]], "path2": [paths[0], paths[3], paths[1]]})
    calls = []
    backbone = tiny_backbone()
    backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    scores = verification.score_pairs(backbone, pairs, transforms.build("hw2p2", 32, train=False),
                                      batch_size=8, flip_tta=False, amp="off")
    assert scores.shape == (3,) and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert sum(calls) == 4  # four distinct files
    with pytest.raises(ValueError, match="path1, path2"):
        verification.score_pairs(backbone, pairs.rename(columns={"path1": "a"}), None)


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


def test_arcface_recipe_fine_tunes_notebook_03_checkpoint(tmp_path, monkeypatch):
    from helpers import results
    from helpers.recipes import ArcFaceRecipe

    monkeypatch.setenv("FACES_RUNS", str(tmp_path))
    monkeypatch.setenv("FACES_PROFILE", "demo")
    recipe = ArcFaceRecipe().for_profile()
    assert recipe.init_from is None and recipe.init_run() is None  # the demo trains from scratch
    recipe = ArcFaceRecipe(backbone="scratch/convnext_atto")
    assert recipe.init_run() is None  # nothing recorded yet
    trained = convnext.create("convnext_atto", num_classes=5)
    run_dir = tmp_path / "03" / "run"
    run_dir.mkdir(parents=True)
    torch.save({"model": trained.state_dict(), "ema": None}, run_dir / "best.pt")
    results.record("03_convnext_from_scratch", "convnext_atto", {"dev_acc": 0.5},
                   settings={"model": "convnext_atto", "norm": "layernorm"}, run_dir=run_dir)
    init = recipe.init_run()
    assert init["checkpoint"] == run_dir / "best.pt" and init["model"] == "convnext_atto"
    softmax, arcface = recipe.build_models(7, init)
    for model in (softmax, arcface):
        torch.testing.assert_close(model.backbone.stem[0].weight, trained.stem[0].weight)
    assert recipe.train_config(init).param_groups == {"backbone.": 0.1}
    assert recipe.train_config(None).param_groups == {}
