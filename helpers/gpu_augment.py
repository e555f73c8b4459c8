"""Train augmentation of whole uint8 batches on their own device (CPU or CUDA), random per sample.

``BatchAugment(level, image_size, mean, std)`` mirrors the strength levels of ``helpers.transforms`` on a
``(B, 3, H, W)`` uint8 batch and returns normalised float32 ``(B, 3, size, size)``. Every random parameter is
drawn per sample from a ``torch.Generator`` that the object owns (``seed(s)``): on the batch's device, except
RandAugment's op choices, drawn on the CPU. So the result depends only on the seed and the input, never on the
global RNG (a CPU and a CUDA generator give different streams for the same seed). MixUp/CutMix draw their
per-batch values from a NumPy generator seeded alongside.

How each step is computed:
- Geometry (random resized crop, flip, perspective, RandAugment's rotate/shear/translate, rotation) is one
  3x3 homography per sample in normalised coordinates, and each image is resampled once (bilinear,
  ``align_corners=False``, edge pixels replicated by one pixel, black beyond): by ``grid_sample`` on a GPU,
  by OpenCV's ``warpPerspective`` on uint8 images on the CPU (``resample``; the same map to within half an
  8-bit level, tested). A full-image crop reproduces ``F.interpolate`` (bilinear, no antialias); pack
  images at the training size so crops are never downscaled by more than the crop scale allows (no
  antialiasing).
- ColorJitter is one per-sample 3x4 colour matrix (brightness, contrast, saturation, then hue) applied in one
  pass (a batched matrix product on a GPU, ``cv2.transform`` on the uint8 warp on the CPU); the contrast mean
  is carried through the matrix, and values are clamped once at the end instead of after every factor. Fixed
  order instead of torchvision's random order. Hue is a linear stand-in for the HSV hue shift: a turn of ``2*pi*h`` about the grey axis (greys unchanged, same direction of turn). It keeps
  each pixel's channel mean where HSV keeps its max and min, so on UTKFace faces at h = 0.05 it moves pixels
  by 7.1 8-bit levels on average (HSV: 5.8) and differs from HSV by 5.5 (a YIQ chroma rotation: 10.2).
- RandAugment draws ``num_ops`` ops per sample, independently, from torchvision's 14 (identity, shear x/y,
  translate x/y, rotate, brightness, color, contrast, sharpness, posterize, solarize, autocontrast,
  equalize) at magnitude 9 of 31 bins, signed at random like torchvision. The geometric ones join the
  homography (so they resample bilinearly, not nearest, and run before the colour ops); each other op is
  computed for the samples that drew it only (a gathered subset). The ops are drawn on the host, so the
  subsets' sizes are known without waiting for the device; their indices reach a GPU in pinned, non-blocking
  copies. Computing every op on the whole batch and keeping it with ``torch.where`` cost ~8.5 of the heavy
  level's 12.4-13.5 ms per batch of 128 on an H100. Equalize is exact (torchvision's batched kernel on 8-bit
  values).
- RandomErasing: a per-sample rectangle (torchvision's 10 tries, scale 0.02-0.33, ratio 0.3-3.3) set to 0
  after normalisation (sliced on the CPU, masked elsewhere).
- Eval (``train=False`` or level ``"none"``): the central square, resized to ``size`` with an antialiased
  bilinear ``F.interpolate`` (torchvision's Resize + CenterCrop).

Why not kornia (``bench/bench_loader.py --gpu-aug``, the same steps minus RandAugment, whose kornia version
picks one op set per batch): its modules resample once per geometric op and sample parameters op by op.
Per batch of 64 images of 224 px on the shared 2-core CPU (two runs, other jobs on the cores): kornia
2,158-4,095 ms, this fused path 489-533 ms (516-714 ms for the full heavy level); per batch of 128 on an H100:
kornia 19-54 ms, fused 3.7-4.6 ms, full heavy 12.4-13.5 ms.

Why OpenCV on the CPU: per 224 px image on one core of the 2-core CPU, ``grid_sample`` took 1.07 ms (plus
0.34 ms for its grid) where ``warpPerspective`` on uint8 takes 0.42 ms, and every float pass over a batch costs
0.1-0.3 ms per image there; the heavy level went from 3.0 to 1.5-1.7 ms per image.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_R = 1 / math.sqrt(3)  # hue turns colours about the grey axis (1, 1, 1) / sqrt(3): Rodrigues' terms
_GREY_AXIS_CROSS = ((0.0, -_R, _R), (_R, 0.0, -_R), (-_R, _R, 0.0))
_GREY_AXIS_OUTER = ((1 / 3,) * 3,) * 3
_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))

# RandAugment's ops in torchvision's order; the first six act on the geometry.
RA_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
          "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_OP = {name: i for i, name in enumerate(RA_OPS)}
# CPU batches run in chunks of this many images: their float temporaries stay small enough to be reused by
# the allocator instead of being mapped afresh (page faults cost as much as the arithmetic).
CPU_CHUNK = 32


@dataclass(frozen=True)
class Policy:
    """The random steps of a level. Probabilities of 0, a (1, 1) crop scale and ratio and zero ranges switch
    steps off; the default is the identity (a full-image or central-square crop resized to ``size``)."""

    crop_scale: tuple[float, float] = (1.0, 1.0)  # RandomResizedCrop area fraction
    crop_ratio: tuple[float, float] = (1.0, 1.0)  # and aspect-ratio range (log-uniform)
    flip_p: float = 0.0
    perspective_p: float = 0.0
    perspective_scale: float = 0.0  # torchvision's distortion_scale
    brightness: float = 0.0  # ColorJitter ranges: factors in [1 - v, 1 + v], hue in [-v, v]
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    randaug_ops: int = 0
    randaug_magnitude: float = 9 / 30  # fraction of torchvision's ranges (bin 9 of 31)
    rotate_degrees: float = 0.0  # RandomRotation(+-degrees)
    erase_p: float = 0.0  # RandomErasing probability


LEVELS: dict[str, Policy] = {
    "none": Policy(),
    "light": Policy(crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), flip_p=0.5),
    "medium": Policy(crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), flip_p=0.5, rotate_degrees=10.0,
                     brightness=0.2, contrast=0.2, saturation=0.2),
    "heavy": Policy(crop_scale=(0.8, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, perspective_p=0.3,
                    perspective_scale=0.2, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05,
                    randaug_ops=2, rotate_degrees=10.0, erase_p=0.25),
}


@functools.cache
def constant(values: tuple, device: torch.device) -> Tensor:
    """A constant tensor made once per device: a fresh ``torch.tensor(..., device="cuda")`` is a blocking copy
    that waits for every queued kernel. Never modify the result in place."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def _uniform(g: torch.Generator, shape: Sequence[int], low: float, high: float, device) -> Tensor:
    return torch.rand(*shape, generator=g, device=device) * (high - low) + low


def _eye(batch: int, device) -> Tensor:
    return torch.eye(3, device=device).expand(batch, 3, 3).clone()


# ---------------------------------------------------------------------------------------------- geometry
# Every matrix maps output coordinates to input coordinates (normalised to [-1, 1], align_corners=False).

def crop_matrix(g: torch.Generator, batch: int, height: int, width: int, scale: tuple[float, float],
                ratio: tuple[float, float], device) -> Tensor:
    """RandomResizedCrop boxes (torchvision's 10 tries, then its central fallback) as ``(B, 3, 3)``."""
    area = _uniform(g, (batch, 10), *scale, device) * (height * width)
    log_ratio = _uniform(g, (batch, 10), math.log(ratio[0]), math.log(ratio[1]), device)
    w, h = (area * log_ratio.exp()).sqrt(), (area / log_ratio.exp()).sqrt()
    fits = (w <= width) & (h <= height)
    first = fits.int().argmax(1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    aspect = min(max(width / height, ratio[0]), ratio[1])  # fallback: the largest central crop in range
    fb_w, fb_h = min(width, height * aspect), min(height, width / aspect)
    found = fits.any(1)
    w, h = torch.where(found, w, fb_w), torch.where(found, h, fb_h)
    u = torch.rand(2, batch, generator=g, device=device)
    x0 = torch.where(found, u[0] * (width - w), (width - w) / 2)
    y0 = torch.where(found, u[1] * (height - h), (height - h) / 2)
    m = _eye(batch, device)
    m[:, 0, 0], m[:, 1, 1] = w / width, h / height
    m[:, 0, 2], m[:, 1, 2] = (2 * x0 + w) / width - 1, (2 * y0 + h) / height - 1
    return m


def flip_matrix(g: torch.Generator, batch: int, p: float, device) -> Tensor:
    """Horizontal flips with probability ``p``."""
    m = _eye(batch, device)
    m[:, 0, 0] = torch.where(torch.rand(batch, generator=g, device=device) < p, -1.0, 1.0)
    return m


def homography(src: Tensor, dst: Tensor) -> Tensor:
    """The ``(B, 3, 3)`` homographies taking the 4 points ``src`` to ``dst`` (both ``(B, 4, 2)``)."""
    x, y = src.unbind(-1)
    u, v = dst.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows = torch.cat([torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1),
                      torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)], 1)
    h = torch.linalg.solve_ex(rows, torch.cat([u, v], 1))[0]  # solve_ex: no error check, no host sync
    return torch.cat([h, one[:, :1]], 1).view(-1, 3, 3)


def perspective_matrix(g: torch.Generator, batch: int, p: float, scale: float, device) -> Tensor:
    """RandomPerspective: each corner moves inwards by up to ``scale`` of the half side, with probability
    ``p``."""
    corners = constant(_CORNERS, device)
    apply = torch.rand(batch, 1, 1, generator=g, device=device) < p
    shift = torch.rand(batch, 4, 2, generator=g, device=device) * scale * apply
    moved = corners - corners * shift
    return homography(moved, corners.expand(batch, 4, 2))


def affine_matrix(angle: Tensor, shear_x: Tensor, shear_y: Tensor, shift_x: Tensor,
                  shift_y: Tensor) -> Tensor:
    """Inverse maps of torchvision's rotate (about the centre; degrees), shear (about the top-left corner, as
    RandAugment uses it) and translate (in normalised units) per sample; zeros give the identity."""
    rad = torch.deg2rad(angle)
    cos, sin = rad.cos(), rad.sin()
    m = _eye(len(angle), angle.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    shear = _eye(len(angle), angle.device)
    shear[:, 0, 1], shear[:, 1, 0] = shear_x, shear_y
    shear[:, 0, 2], shear[:, 1, 2] = shear_x - shift_x, shear_y - shift_y  # pivot (-1, -1), then shift
    return shear @ m


def randaug_geometry(op: Tensor, magnitude: Tensor) -> Tensor:
    """Inverse maps of one RandAugment slot per sample (torchvision's ranges: shear 0.3, translate 150/331 of
    the side, rotate 30 degrees, times the signed ``magnitude``); the identity where a colour op was drawn."""
    def pick(name: str, full: float) -> Tensor:
        return torch.where(op == _OP[name], magnitude * full, 0.0)
    return affine_matrix(-pick("rotate", 30.0), -pick("shear_x", 0.3), -pick("shear_y", 0.3),
                         pick("translate_x", 2 * 150 / 331), pick("translate_y", 2 * 150 / 331))


def sampling_grid(matrix: Tensor, size: int) -> Tensor:
    """The ``(B, size, size, 2)`` grid of ``matrix`` applied to the output pixel centres: each coordinate is a
    column term plus a row term, so only the sums and the projective division touch the full grid."""
    centres = (torch.arange(size, device=matrix.device, dtype=matrix.dtype) * 2 + 1) / size - 1
    xs, ys = centres.view(1, 1, -1, 1), centres.view(1, -1, 1, 1)
    m = matrix.view(-1, 1, 1, 3, 3)
    xy = m[..., :2, 0] * xs + (m[..., :2, 1] * ys + m[..., :2, 2])
    return xy.div_(m[..., 2, 0:1] * xs + (m[..., 2, 1:2] * ys + m[..., 2, 2:3]))


def _padded_matrix(matrix: Tensor, height: int, width: int) -> Tensor:
    """``matrix`` for the image with a 1-pixel border added: a replicated border keeps the half pixel inside the
    image edge as a resize does (and fades to black over one pixel outside it)."""
    return constant(((width / (width + 2), 0.0, 0.0), (0.0, height / (height + 2), 0.0), (0.0, 0.0, 1.0)),
                    matrix.device) @ matrix


def _resample_grid(images: Tensor, matrix: Tensor, size: int) -> Tensor:
    """Bilinear ``grid_sample`` of the float images (any device)."""
    height, width = images.shape[-2:]
    padded = F.pad(images.float(), (1, 1, 1, 1), mode="replicate")
    x = F.grid_sample(padded, sampling_grid(_padded_matrix(matrix, height, width), size), mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    return x.mul_(1 / 255)


def _warp_opencv(images: Tensor, matrix: Tensor, size: int) -> Tensor:
    """OpenCV's bilinear ``warpPerspective`` of each uint8 image (CPU, as many threads as torch uses), as a
    uint8 ``(B, size, size, 3)`` batch."""
    batch, _, height, width = images.shape
    hp, wp = height + 2, width + 2
    to_pixels = torch.tensor(((wp / 2, 0, (wp - 1) / 2), (0, hp / 2, (hp - 1) / 2), (0, 0, 1)), dtype=torch.float64)
    from_pixels = torch.tensor(((2 / size, 0, 1 / size - 1), (0, 2 / size, 1 / size - 1), (0, 0, 1)),
                               dtype=torch.float64)
    maps = (to_pixels @ _padded_matrix(matrix, height, width).double() @ from_pixels).numpy()
    if cv2.getNumThreads() != torch.get_num_threads():
        cv2.setNumThreads(torch.get_num_threads())
    source = images.permute(0, 2, 3, 1).contiguous().numpy()  # a view when the batch is channels-last
    out = np.empty((batch, size, size, 3), np.uint8)
    for image, m, dst in zip(source, maps, out):
        cv2.warpPerspective(cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_REPLICATE), m, (size, size), dst=dst,
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    return torch.from_numpy(out)


def _to_unit(channels_last: Tensor) -> Tensor:
    """A uint8 ``(B, H, W, 3)`` batch as a contiguous float ``(B, 3, H, W)`` in [0, 1], in one pass (the colour
    ops' row copies are ~6x slower on channels-last memory)."""
    batch, height, width, _ = channels_last.shape
    return torch.mul(channels_last.permute(0, 3, 1, 2), 1 / 255, out=torch.empty(batch, 3, height, width))


def _resample_opencv(images: Tensor, matrix: Tensor, size: int) -> Tensor:
    return _to_unit(_warp_opencv(images, matrix, size))


RESAMPLERS = {"grid_sample": _resample_grid, "opencv": _resample_opencv}


def resampler_for(device: torch.device, method: str | None = None) -> str:
    """``method`` checked (a key of ``RESAMPLERS``; OpenCV only on CPU), or the device's default: OpenCV on
    CPU, ``grid_sample`` elsewhere."""
    method = method or ("opencv" if device.type == "cpu" else "grid_sample")
    if method not in RESAMPLERS:
        raise ValueError(f"Unknown resampler {method!r}; known: {sorted(RESAMPLERS)}.")
    if method == "opencv" and device.type != "cpu":
        raise ValueError(f"The OpenCV resampler runs on CPU tensors, not {device}; use 'grid_sample' or None.")
    return method


def resample(images: Tensor, matrix: Tensor, size: int, method: str | None = None) -> Tensor:
    """The uint8 ``images`` ``(B, 3, H, W)`` warped by the output-to-input ``matrix`` ``(B, 3, 3)`` into float
    ``(B, 3, size, size)`` in [0, 1]. ``method`` (``resampler_for``): ``"grid_sample"`` (any device, float
    arithmetic) or ``"opencv"`` (CPU; the same bilinear map to within half an 8-bit level, rounded to uint8)."""
    return RESAMPLERS[resampler_for(images.device, method)](images, matrix, size)


# ------------------------------------------------------------------------------------------------ colour

def jitter_matrix(b: Tensor, c: Tensor, s: Tensor, h: Tensor, channel_mean: Tensor) -> Tensor:
    """ColorJitter as one ``(B, 3, 4)`` affine colour map: brightness, contrast (towards the grey mean of the
    brightened image, computed from ``channel_mean``), saturation, then hue as a turn of ``2 * pi * h`` about
    the grey axis."""
    batch, device = len(b), b.device
    grey = constant(GREY, device)
    m = _eye(batch, device) * b.view(-1, 1, 1)
    shift = ((1 - c) * b * (channel_mean @ grey)).view(-1, 1, 1).expand(batch, 3, 1)
    m = m * c.view(-1, 1, 1)
    sat = _eye(batch, device) * s.view(-1, 1, 1) + (1 - s).view(-1, 1, 1) * grey.expand(3, 3)
    cos, sin = (2 * math.pi * h).cos().view(-1, 1, 1), (2 * math.pi * h).sin().view(-1, 1, 1)
    turn = cos * _eye(batch, device) + sin * constant(_GREY_AXIS_CROSS, device)
    colour = (turn + (1 - cos) * constant(_GREY_AXIS_OUTER, device)) @ sat
    return torch.cat([colour @ m, colour @ shift], 2)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """torchvision's blend ``other + f * (x - other)`` with a per-sample factor, clamped to [0, 1]."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 1)


def _smooth(x: Tensor) -> Tensor:
    """torchvision's sharpness degenerate: the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 inside, the
    border rows and columns kept; as slice sums (a depthwise conv2d is ~20x slower on CPU)."""
    rows = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    out = x.clone()
    out[..., 1:-1, 1:-1] = box.add_(x[..., 1:-1, 1:-1], alpha=4).div_(13)
    return out


def _autocontrast(x: Tensor) -> Tensor:
    """torchvision's autocontrast (each channel stretched to [0, 1]; flat channels kept) without its boolean
    indexing, which would wait for the device."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, 1.0, 1.0 / (high - low))
    return ((x - torch.where(flat, 0.0, low)) * scale).clamp_(0, 1)


def _grey(x: Tensor) -> Tensor:
    """The ``(B, 1, H, W)`` luma (three multiply-adds: a weighted ``sum`` over channels is ~8x slower on CPU)."""
    r, g, b = GREY
    return (x[:, 0:1] * r).add_(x[:, 1:2], alpha=g).add_(x[:, 2:3], alpha=b)


_COLOUR_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {  # RandAugment's other ops: f(images, factor)
    "brightness": lambda x, f: (x * f.view(-1, 1, 1, 1)).clamp_(0, 1),
    "color": lambda x, f: _blend(x, _grey(x), f),
    "contrast": lambda x, f: _blend(x, _grey(x).mean((2, 3), keepdim=True), f),
    "sharpness": lambda x, f: _blend(x, _smooth(x), f),
    "posterize": lambda x, f: TF.posterize(x, 7),  # bin 9 of torchvision's 8..4 bits
    "solarize": lambda x, f: TF.solarize(x, 0.7),  # bin 9 of torchvision's 1..0 thresholds
    "autocontrast": lambda x, f: _autocontrast(x),
    "equalize": lambda x, f: TF.equalize(x),
}


def _to_device_async(t: Tensor, device: torch.device) -> Tensor:
    """A small host tensor on ``device`` without waiting for it (pinned, non-blocking on CUDA)."""
    if device.type == "cuda" and t.numel():
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def apply_where(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor], factor: Tensor) -> Tensor:
    """``fn(x, factor)`` computed on the samples where the host (CPU) ``mask`` holds, in place (``factor``: one
    row per sample, on ``x``'s device); the others unchanged."""
    rows = mask.nonzero().squeeze(1)
    if len(rows):  # index_select is ~10x faster than x[rows] on CPU
        rows = _to_device_async(rows, x.device)
        x.index_copy_(0, rows, fn(x.index_select(0, rows), factor.index_select(0, rows)))
    return x


def erase_boxes(g: torch.Generator, batch: int, size: int, p: float, device,
                scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)) -> Tensor:
    """RandomErasing's rectangles as ``(B, 4)`` float ``top, left, height, width`` (torchvision's 10 tries per
    sample); a sample left alone has height and width 0."""
    area = _uniform(g, (batch, 10), *scale, device) * size * size
    log_ratio = _uniform(g, (batch, 10), math.log(ratio[0]), math.log(ratio[1]), device)
    h, w = (area * log_ratio.exp()).sqrt().round(), (area / log_ratio.exp()).sqrt().round()
    fits = (h < size) & (w < size)
    first = fits.int().argmax(1, keepdim=True)
    h, w = h.gather(1, first), w.gather(1, first)
    apply = fits.any(1, keepdim=True) & (torch.rand(batch, 1, generator=g, device=device) < p)
    top = (torch.rand(batch, 1, generator=g, device=device) * (size - h + 1)).floor()
    left = (torch.rand(batch, 1, generator=g, device=device) * (size - w + 1)).floor()
    return torch.cat([top, left, h * apply, w * apply], 1)


def box_mask(boxes: Tensor, size: int) -> Tensor:
    """The ``(B, 1, size, size)`` bool mask of ``erase_boxes``' rectangles."""
    top, left, h, w = boxes.unsqueeze(-1).unbind(1)
    pos = torch.arange(size, device=boxes.device).view(1, -1)
    rows, cols = (pos >= top) & (pos < top + h), (pos >= left) & (pos < left + w)
    return (rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1)


def erase(x: Tensor, boxes: Tensor) -> Tensor:
    """``x`` with each sample's box (``erase_boxes``) set to 0: in place by slicing on CPU; on other devices
    through ``box_mask`` (no host sync)."""
    if x.device.type != "cpu":
        return x.masked_fill(box_mask(boxes, x.shape[-1]), 0.0)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        x[i, :, top:top + h, left:left + w] = 0.0
    return x


# ----------------------------------------------------------------------------------------------- module

class BatchAugment:
    """Per-sample random augmentation of a uint8 batch ``(B, 3, H, W)`` on its device, normalised.

    ``level``: a key of ``LEVELS`` (``none``, ``light``, ``medium``, ``heavy``) or a ``Policy``;
    ``train=False`` or ``"none"`` gives the eval transform (central square resized to ``image_size``). With
    ``mixup_alpha`` or ``cutmix_alpha`` > 0 (and ``num_classes``), a call with labels mixes the batch with one
    of the two (chosen per batch, torchvision v2 semantics: pairs ``i`` with ``i - 1``) and returns soft
    labels.
    """

    def __init__(self, level: str | Policy, image_size: int, mean: Sequence[float], std: Sequence[float],
                 train: bool = True, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 num_classes: int | None = None, resampler: str | None = None):
        if isinstance(level, str) and level not in LEVELS:
            raise KeyError(f"Unknown augmentation level {level!r}; known: {sorted(LEVELS)}.")
        if (mixup_alpha > 0 or cutmix_alpha > 0) and not num_classes:
            raise ValueError("MixUp/CutMix need num_classes.")
        if resampler is not None and resampler not in RESAMPLERS:
            raise ValueError(f"Unknown resampler {resampler!r}; known: {sorted(RESAMPLERS)}.")
        self.level, self.image_size, self.train, self.resampler = level, image_size, train, resampler
        policy = LEVELS[level] if isinstance(level, str) else level
        self.policy = None if not train or level == "none" else policy
        self.mean, self.std = tuple(mean), tuple(std)
        self.mixers = [(name, alpha) for name, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha))
                       if alpha > 0 and train]
        self.num_classes = num_classes
        self.seed(0)

    def __repr__(self) -> str:
        mix = "".join(f", {name}={alpha}" for name, alpha in self.mixers)
        return f"BatchAugment({self.level!r}, {self.image_size}, train={self.train}{mix})"

    def seed(self, seed: int) -> None:
        """Restart every random stream from ``seed`` (per-device torch generators, the MixUp/CutMix one)."""
        self._seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._batch_rng = np.random.default_rng(seed)

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self._seed)
        return self._generators[device]

    def __call__(self, images: Tensor, labels: Tensor | None = None, out: Tensor | None = None):
        """Float32 ``(B, 3, size, size)`` normalised images, or ``(images, labels)`` when labels are given
        (soft ``(B, num_classes)`` float labels when MixUp/CutMix is on). ``out``: a tensor of that shape to
        write the images into (shared memory, in a DataLoader worker)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        transform = self._train if self.policy is not None else self._eval
        step = CPU_CHUNK if images.device.type == "cpu" else max(1, len(images))
        if out is None and len(images) <= step:
            out = transform(images, None)
        else:
            size = self.image_size
            out = torch.empty(len(images), 3, size, size, device=images.device) if out is None else out
            for start in range(0, len(images), step):
                view = out[start:start + step]
                result = transform(images[start:start + step], view)
                if result is not view:
                    view.copy_(result)
        if labels is None:
            return out
        if self.mixers:
            out, labels = self._mix(out, labels)
        return out, labels

    def _eval(self, images: Tensor, out: Tensor | None) -> Tensor:
        """The central square resized to ``image_size`` (antialiased), normalised (into ``out`` if given)."""
        side = min(images.shape[-2:])
        top, left = (images.shape[-2] - side) // 2, (images.shape[-1] - side) // 2
        x = images[..., top:top + side, left:left + side].float().div_(255)
        if side != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0, 1)
        return self._normalize(x, out)

    def _train(self, images: Tensor, out: Tensor | None) -> Tensor:
        """One warp with the colour jitter, RandAugment's colour ops, normalisation (into ``out`` if given),
        then the erasing mask (0 = the mean colour)."""
        p, g, batch, device = self.policy, self._generator(images.device), len(images), images.device
        ops = torch.randint(len(RA_OPS), (batch, p.randaug_ops), generator=self._generator(torch.device("cpu")))
        sign = torch.where(torch.rand(batch, p.randaug_ops, generator=g, device=device) < 0.5, -1.0, 1.0)
        magnitude = sign * p.randaug_magnitude
        geometry = self._geometry(g, images.shape, _to_device_async(ops, device), magnitude)
        x = self._warp_and_jitter(g, images, geometry)
        for k in range(ops.shape[1]):
            for name, fn in _COLOUR_OPS.items():
                x = apply_where(x, ops[:, k] == _OP[name], fn, 1 + magnitude[:, k])
        x = self._normalize(x, out)
        if p.erase_p > 0:
            x = erase(x, erase_boxes(g, batch, self.image_size, p.erase_p, device))
        return x

    def _geometry(self, g: torch.Generator, shape: torch.Size, ops: Tensor, magnitude: Tensor) -> Tensor:
        """Crop, flip, perspective, RandAugment geometry and rotation as one ``(B, 3, 3)`` matrix."""
        p, (batch, _, height, width), device = self.policy, shape, ops.device
        m = crop_matrix(g, batch, height, width, p.crop_scale, p.crop_ratio, device)
        m = m @ flip_matrix(g, batch, p.flip_p, device)
        if p.perspective_p > 0:
            m = m @ perspective_matrix(g, batch, p.perspective_p, p.perspective_scale, device)
        for k in range(ops.shape[1]):
            m = m @ randaug_geometry(ops[:, k], magnitude[:, k])
        if p.rotate_degrees:
            angle = _uniform(g, (batch,), -p.rotate_degrees, p.rotate_degrees, device)
            m = m @ affine_matrix(angle, *torch.zeros(4, batch, device=device))
        return m

    def _warp_and_jitter(self, g: torch.Generator, images: Tensor, matrix: Tensor) -> Tensor:
        """The one resampling, then ColorJitter as one colour matrix per sample, in [0, 1]. OpenCV applies it to
        the uint8 warp (``cv2.transform``: clamped and rounded to 8 bits, as torchvision's uint8 ops round);
        ``grid_sample``'s float result gets it as one batched matrix product."""
        p, batch, device = self.policy, len(images), images.device
        jitter = p.brightness or p.contrast or p.saturation or p.hue
        if jitter:
            factors = [_uniform(g, (batch,), max(0.0, 1 - v), 1 + v, device)
                       for v in (p.brightness, p.contrast, p.saturation)]
            hue = _uniform(g, (batch,), -p.hue, p.hue, device)
        method = resampler_for(device, self.resampler)
        if method == "opencv":
            warped = _warp_opencv(images, matrix, self.image_size)
            if jitter:
                means = torch.tensor([cv2.mean(image)[:3] for image in warped.numpy()]) / 255
                affine = jitter_matrix(*factors, hue, means) * constant((1.0, 1.0, 1.0, 255.0), device)
                for image, m in zip(warped.numpy(), affine.numpy()):
                    cv2.transform(image, m, dst=image)
            return _to_unit(warped)
        x = resample(images, matrix, self.image_size, method)
        if jitter:
            affine = jitter_matrix(*factors, hue, x.mean((2, 3)))
            x = torch.baddbmm(affine[:, :, 3:], affine[:, :, :3], x.view(batch, 3, -1)).clamp_(0, 1).view_as(x)
        return x

    def _normalize(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``(x - mean) / std`` as one multiply-add, into ``out`` when given."""
        scale = constant(tuple(1 / s for s in self.std), x.device).view(1, -1, 1, 1)
        shift = constant(tuple(-m / s for m, s in zip(self.mean, self.std)), x.device).view(1, -1, 1, 1)
        return torch.addcmul(shift, x, scale, out=out)

    def _mix(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """MixUp or CutMix (one, chosen per batch) with torchvision v2's pairing and label weights."""
        if labels.dtype != torch.int64 or labels.ndim != 1:
            raise ValueError("MixUp/CutMix need int64 class labels of shape (B,).")
        name, alpha = self.mixers[self._batch_rng.integers(len(self.mixers))]
        lam = float(self._batch_rng.beta(alpha, alpha))
        rolled = x.roll(1, 0)
        if name == "mixup":
            x = x.mul_(lam).add_(rolled, alpha=1 - lam)
        else:
            size = x.shape[-1]
            cx, cy = self._batch_rng.integers(size, size=2)
            half = int(0.5 * math.sqrt(1.0 - lam) * size)
            x1, y1, x2, y2 = max(cx - half, 0), max(cy - half, 0), min(cx + half, size), min(cy + half, size)
            x[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
            lam = 1.0 - (x2 - x1) * (y2 - y1) / (size * size)
        onehot = torch.zeros(len(labels), self.num_classes, device=labels.device)
        onehot.scatter_(1, labels[:, None], 1.0)  # F.one_hot would check the range on the host
        return x, onehot * lam + onehot.roll(1, 0) * (1 - lam)
