"""gpu_augment: shapes and ranges, per-sample randomness, seeding, identities of the fused warp, colour ops,
erasing and MixUp/CutMix on tiny CPU batches."""

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from helpers import gpu_augment as ga
from helpers.gpu_augment import LEVELS, BatchAugment, Policy

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is faster on shared cores
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RAW = ((0.0,) * 3, (1.0,) * 3)  # mean 0, std 1: the [0, 1] images before normalisation
IDENTITY = Policy()


def batch(n: int = 4, height: int = 40, width: int = 40, seed: int = 0) -> torch.Tensor:
    """Asymmetric, smooth-ish uint8 images (a gradient plus noise) so flips and warps are visible."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 200, width).view(1, 1, 1, -1).expand(n, 3, height, width)
    noise = torch.randint(0, 56, (n, 3, height, width), generator=g)
    return (ramp + noise).to(torch.uint8)


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtypes_and_ranges(level, train):
    images = batch(height=40, width=48)
    out = BatchAugment(level, 32, MEAN, STD, train=train)(images)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert (out >= low.view(1, 3, 1, 1) - 1e-5).all() and (out <= high.view(1, 3, 1, 1) + 1e-5).all()
    raw = BatchAugment(level, 32, *RAW, train=train)(images)
    assert raw.min() >= 0 and raw.max() <= 1


def test_rejects_other_inputs():
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment("light", 32, MEAN, STD)(batch().float())
    with pytest.raises(KeyError, match="known"):
        BatchAugment("extreme", 32, MEAN, STD)


@pytest.mark.parametrize("level", ["light", "heavy"])
def test_each_sample_gets_its_own_draw(level):
    images = batch(1).expand(6, -1, -1, -1).contiguous()
    out = BatchAugment(level, 32, MEAN, STD)(images)
    flat = out.flatten(1)
    distinct = [not torch.allclose(flat[i], flat[j]) for i in range(6) for j in range(i + 1, 6)]
    assert all(distinct)


def test_flips_differ_per_sample_and_mirror_exactly():
    images = batch(1).expand(16, -1, -1, -1).contiguous()
    out = BatchAugment(Policy(flip_p=0.5), 40, *RAW)(images)
    plain = images[0].float() / 255
    flipped = [torch.allclose(o, plain.flip(-1), atol=1e-5) for o in out]
    kept = [torch.allclose(o, plain, atol=1e-5) for o in out]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_crops_differ_per_sample():
    images = batch(1).expand(8, -1, -1, -1).contiguous()
    out = BatchAugment(Policy(crop_scale=(0.5, 0.9), crop_ratio=(0.8, 1.25)), 32, *RAW)(images)
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) == 8


def test_identity_policy_is_the_eval_transform_and_eval_is_deterministic():
    images = batch(height=32, width=32)
    train = BatchAugment(IDENTITY, 32, MEAN, STD)
    evaluate = BatchAugment("heavy", 32, MEAN, STD, train=False)
    torch.testing.assert_close(train(images), evaluate(images), atol=1e-5, rtol=0)
    assert torch.equal(evaluate(images), evaluate(images))
    assert torch.equal(BatchAugment("none", 32, MEAN, STD)(images), evaluate(images))


def test_eval_matches_torchvision_resize_and_centre_crop():
    images = batch(height=48, width=72)
    ours = BatchAugment("light", 32, *RAW, train=False)(images)
    theirs = TF.center_crop(TF.resize(images, 32, antialias=True), 32).float() / 255
    assert (ours - theirs).abs().mean() < 0.01


HALF_LEVEL = 0.5 / 255 + 1e-6  # OpenCV rounds its warp to uint8


@pytest.mark.parametrize("side", [24, 40])
@pytest.mark.parametrize(("resampler", "atol"), [("grid_sample", 1e-4), ("opencv", HALF_LEVEL)])
def test_full_image_warp_is_a_plain_bilinear_resize(side, resampler, atol):
    images = batch(height=side, width=side)
    ours = BatchAugment(IDENTITY, 32, *RAW, resampler=resampler)(images)
    plain = F.interpolate(images.float(), size=(32, 32), mode="bilinear", align_corners=False,
                          antialias=False)
    torch.testing.assert_close(ours, plain / 255, atol=atol, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_opencv_warp_is_the_grid_sample_warp_rounded(channels_last):
    """The CPU resampler and the one the GPU runs agree on every pixel of random heavy warps (black corners,
    replicated edges, perspective) to within the uint8 rounding; the result does not depend on the layout."""
    images = batch(8, 40, 56)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    g, policy = torch.Generator().manual_seed(0), LEVELS["heavy"]
    m = ga.crop_matrix(g, 8, 40, 56, policy.crop_scale, policy.crop_ratio, "cpu")
    m = m @ ga.perspective_matrix(g, 8, 1.0, 0.3, "cpu") @ ga.affine_matrix(
        torch.linspace(-30, 30, 8), *torch.zeros(4, 8))
    grid, cv = ga.resample(images, m, 32, "grid_sample"), ga.resample(images, m, 32, "opencv")
    assert (cv == 0).any()  # corners outside the image are black
    torch.testing.assert_close(cv, grid, atol=HALF_LEVEL, rtol=0)
    assert torch.equal(ga.resample(images, m, 32), cv)  # the CPU default
    with pytest.raises(ValueError, match="resampler"):
        BatchAugment("light", 32, MEAN, STD, resampler="nearest")


def test_opencv_colour_jitter_is_the_float_jitter_rounded():
    """On CPU the jitter matrix is applied to the uint8 warp; the float path applies the same matrix (drawn
    from the same seed) to the float warp: they agree to within the 8-bit rounding of each step."""
    policy = Policy(crop_scale=(0.7, 1.0), flip_p=0.5, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    images = batch(8, 40, 40)
    cv, grid = (BatchAugment(policy, 32, *RAW, resampler=r)(images) for r in ("opencv", "grid_sample"))
    assert not torch.allclose(cv, BatchAugment(dataclasses.replace(policy, brightness=0.0), 32, *RAW)(images))
    torch.testing.assert_close(cv, grid, atol=2 / 255, rtol=0)
    assert (cv - grid).abs().mean() < 0.5 / 255


def test_same_seed_same_batch_other_seed_other_batch():
    images = batch(8)
    aug = BatchAugment("heavy", 32, MEAN, STD)
    aug.seed(3)
    first = aug(images)
    aug.seed(3)
    assert torch.equal(first, aug(images))
    aug.seed(4)
    assert not torch.equal(first, aug(images))
    torch.manual_seed(0)  # the global RNG plays no part
    aug.seed(3)
    assert torch.equal(first, aug(images))


def test_homography_maps_the_points():
    src = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    dst = src * 0.8 + torch.tensor([0.1, -0.05])
    h = ga.homography(src, dst)[0]
    mapped = torch.cat([src[0], torch.ones(4, 1)], 1) @ h.T
    torch.testing.assert_close(mapped[:, :2] / mapped[:, 2:], dst[0], atol=1e-5, rtol=0)


def test_jitter_matrix_semantics():
    x = torch.rand(2, 3, 8, 8)
    one, zero = torch.ones(2), torch.zeros(2)

    def apply(b, c, s, h):
        m = ga.jitter_matrix(b, c, s, h, x.mean((2, 3)))
        return torch.baddbmm(m[:, :, 3:], m[:, :, :3], x.view(2, 3, -1)).view_as(x)

    torch.testing.assert_close(apply(one, one, one, zero), x)
    dim = torch.full((2,), 0.5)
    torch.testing.assert_close(apply(dim, one, one, zero).mean(), 0.5 * x.mean())
    grey = apply(one, one, zero, zero)
    torch.testing.assert_close(grey[:, 0], grey[:, 1]) and torch.testing.assert_close(grey[:, 1], grey[:, 2])
    flat = apply(one, zero, one, zero)
    torch.testing.assert_close(flat.amax((1, 2, 3)), flat.amin((1, 2, 3)))  # contrast 0: the grey mean
    shifted = apply(one, one, one, torch.full((2,), 0.05))  # a hue turn keeps greys and each pixel's mean
    assert not torch.allclose(shifted, x)
    torch.testing.assert_close(shifted.mean(1), x.mean(1))
    turn = ga.jitter_matrix(one, one, one, torch.full((2,), 0.05), x.mean((2, 3)))[:, :, :3]
    greys = x.mean(1, keepdim=True).expand_as(x).reshape(2, 3, -1)
    torch.testing.assert_close(turn @ greys, greys)


def test_colour_ops_keep_the_range_and_match_torchvision():
    x = torch.rand(3, 3, 10, 10)
    for factor in (0.73, 1.27):
        for fn in ga._COLOUR_OPS.values():
            out = fn(x.clone(), torch.full((3,), factor))
            assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(ga._smooth(x), TF.adjust_sharpness(x, 0.0))
    x[0, 1] = 0.5  # a flat channel stays as it is
    torch.testing.assert_close(ga._autocontrast(x), TF.autocontrast(x))
    bright = ga._COLOUR_OPS["brightness"](x.clone() * 0.5, torch.full((3,), 1.2))
    torch.testing.assert_close(bright.mean(), 0.6 * x.mean())


def test_apply_where_computes_and_touches_only_the_masked_samples():
    x = torch.rand(4, 3, 6, 6)
    mask = torch.tensor([True, False, True, False])
    seen = []
    out = ga.apply_where(x.clone(), mask, lambda t, f: seen.append((len(t), f.tolist())) or t * 0,
                         torch.arange(4.0))
    assert seen == [(2, [0.0, 2.0])]  # the op ran on the two selected samples, with their own factors
    assert (out[mask] == 0).all() and torch.equal(out[~mask], x[~mask])
    ga.apply_where(x, torch.zeros(4, dtype=torch.bool), lambda t, f: seen.append(len(t)), torch.ones(4))
    assert len(seen) == 1  # nobody drew the op: it does not run


def test_erasing_sets_a_rectangle_to_zero():
    images = torch.full((6, 3, 32, 32), 255, dtype=torch.uint8)
    out = BatchAugment(Policy(erase_p=1.0), 32, *RAW)(images)
    for o in out:
        zero = (o == 0).all(0)
        rows, cols = zero.any(1).nonzero().squeeze(1), zero.any(0).nonzero().squeeze(1)
        assert len(rows) and zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert 0.02 * 1024 * 0.5 <= zero.sum() <= 0.33 * 1024 * 1.5 and (o[:, ~zero] == 1).all()


def test_erasing_by_slices_is_erasing_by_the_mask():
    """The CPU slices and the mask other devices use erase the same pixels."""
    boxes = ga.erase_boxes(torch.Generator().manual_seed(0), 16, 24, 0.5, "cpu")
    assert (boxes[:, 2] == 0).any() and (boxes[:, 2] > 0).any()
    x = torch.rand(16, 3, 24, 24)
    torch.testing.assert_close(ga.erase(x.clone(), boxes), x.masked_fill(ga.box_mask(boxes, 24), 0.0))


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixup_and_cutmix_soft_labels(mix):
    values = torch.tensor([0, 60, 120, 180, 240], dtype=torch.uint8)
    images = values.view(5, 1, 1, 1).expand(5, 3, 16, 16).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 4])
    alphas = {"mixup_alpha": 1.0} if mix == "mixup" else {"cutmix_alpha": 1.0}
    aug = BatchAugment(IDENTITY, 16, *RAW, num_classes=5, **alphas)
    out, soft = aug(images, labels)
    assert soft.shape == (5, 5) and torch.allclose(soft.sum(1), torch.ones(5))
    weights = soft.gather(1, torch.stack([labels, labels.roll(1)], 1))  # own label, previous sample's label
    torch.testing.assert_close(weights.sum(1), torch.ones(5))
    expected = weights[:, 0] * values.float() / 255 + weights[:, 1] * values.roll(1).float() / 255
    torch.testing.assert_close(out.mean((1, 2, 3)), expected, atol=1e-5, rtol=0)
    if mix == "cutmix":  # every pixel comes from one of the two images
        own = (out - (values.float() / 255).view(5, 1, 1, 1)).abs() < 1e-5
        other = (out - (values.roll(1).float() / 255).view(5, 1, 1, 1)).abs() < 1e-5
        assert (own | other).all()


def test_mixing_needs_labels_and_classes():
    with pytest.raises(ValueError, match="num_classes"):
        BatchAugment("light", 32, MEAN, STD, mixup_alpha=0.2)
    aug = BatchAugment("light", 32, MEAN, STD, mixup_alpha=0.2, num_classes=3)
    with pytest.raises(ValueError, match="int64"):
        aug(batch(), torch.zeros(4, 3))


def test_levels_grow_in_strength():
    """Each level adds to the previous one, as the CPU recipes do."""
    def changed(name: str) -> set[str]:
        return {f.name for f in dataclasses.fields(Policy)
                if getattr(LEVELS[name], f.name) != getattr(IDENTITY, f.name)}

    fields = [changed(name) for name in ("none", "light", "medium", "heavy")]
    assert fields[0] == set() and all(a <= b for a, b in itertools.pairwise(fields))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_is_reproducible_sync_free_and_matches_the_cpu_ops():
    images = batch(16, 48, 48).cuda()
    aug = BatchAugment("heavy", 32, MEAN, STD, mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=4)
    labels = torch.arange(16, device="cuda") % 4
    aug(images, labels)  # warm-up: first-call allocations and lazy initialisation
    aug.seed(5)
    torch.cuda.set_sync_debug_mode("error")
    try:
        first, soft = aug(images, labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert first.device.type == "cuda" and soft.shape == (16, 4)
    aug.seed(5)
    assert torch.equal(aug(images, labels)[0], first)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    factor = 1 + torch.linspace(-0.3, 0.3, 16)
    mask = torch.arange(16) % 3 == 0
    for name, fn in ga._COLOUR_OPS.items():  # each RandAugment subset on the GPU is the CPU one
        on_gpu = ga.apply_where(x.cuda(), mask, fn, factor.cuda())
        torch.testing.assert_close(on_gpu.cpu(), ga.apply_where(x.clone(), mask, fn, factor), atol=1e-5, rtol=0,
                                   msg=name)
