"""The synthetic demo twin: procedurally drawn faces written in every real dataset layout.

``ensure(name)`` writes the twin of one dataset under ``config.data_root()`` (``data/demo/`` with
``FACES_PROFILE=demo``) so that every notebook runs end to end in seconds, offline; ``make_all`` writes
all of them. An identity is a stable set of face parameters (:class:`FaceParams`) in which gender, race
and age visibly shape the face; each image (:func:`draw_face`) varies pose, light, background and noise.
Everything is deterministic from the seed: the same seed writes the same bytes.
"""
from __future__ import annotations

import shutil
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

from helpers import config
from helpers.datasets import constants as C

RGB = tuple[int, int, int]
MARKER = ".demo_twin"
PARTIAL = ".demo_twin.partial"
JPEG_QUALITY = 90
EXPRESSIONS = ("neutral", "smile", "open")
FACE_HEIGHT = 0.6  # head height / image height
BACKGROUND_LEVELS = (70, 235)  # range of a background's mean brightness

# Skin palette of each race class: (light end, dark end), sampled along the segment.
SKIN = {
    "White": ((242, 208, 186), (212, 160, 130)),
    "Black": ((142, 96, 66), (66, 42, 30)),
    "Latino_Hispanic": ((222, 176, 136), (176, 124, 86)),
    "East Asian": ((244, 212, 176), (214, 172, 130)),
    "Southeast Asian": ((212, 162, 116), (158, 110, 72)),
    "Indian": ((190, 136, 98), (120, 80, 52)),
    "Middle Eastern": ((228, 188, 150), (184, 136, 100)),
}
EYE_OPENNESS = {"East Asian": (0.28, 0.38), "Southeast Asian": (0.38, 0.48)}
DEFAULT_OPENNESS = (0.48, 0.62)
HAIR_COLOURS = {"black": (26, 22, 22), "dark_brown": (58, 40, 30), "brown": (104, 70, 44),
                "light_brown": (150, 110, 70), "blond": (216, 182, 112), "red": (160, 72, 38)}
EYE_COLOURS = {"dark": (50, 32, 22), "brown": (104, 64, 34), "hazel": (128, 104, 50),
               "green": (72, 118, 72), "blue": (70, 116, 180), "grey": (118, 130, 142)}
LIGHT_FEATURED = ("White",)  # races whose hair and eye colours range widely; keys of the weights below
HAIR_WEIGHTS = {True: (0.14, 0.22, 0.24, 0.12, 0.20, 0.08), False: (0.66, 0.26, 0.08, 0.0, 0.0, 0.0)}
EYE_WEIGHTS = {True: (0.18, 0.24, 0.12, 0.14, 0.24, 0.08), False: (0.62, 0.33, 0.05, 0.0, 0.0, 0.0)}
HAIR_STYLES = {
    "Male": {"short": 0.38, "side_part": 0.27, "buzz": 0.17, "curly": 0.08, "bald": 0.07, "long": 0.03},
    "Female": {"long": 0.47, "bob": 0.21, "bangs": 0.15, "curly": 0.1, "bun": 0.055, "short": 0.015},
}
LONG_STYLES = ("long", "bob", "bangs", "bun")
BACK_HAIR = {"long": 0.95, "bob": 0.42, "bangs": 0.6, "curly": 0.75}  # how far below the head centre, x H
LIPSTICKS = ((182, 40, 60), (200, 80, 100), (130, 30, 50), (210, 90, 80))
EYE_SHADOWS = ((120, 70, 150), (70, 100, 170), (120, 80, 60), (80, 130, 100))
# FairFace age-bin frequencies (roughly those of the real training set) and the years each bin spans.
FAIRFACE_AGE_WEIGHTS = (0.02, 0.12, 0.11, 0.30, 0.22, 0.12, 0.07, 0.03, 0.01)
FAIRFACE_AGE_SPANS = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 90))
ADIENCE_AGE_SPANS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 90))
ADIENCE_IRREGULAR_AGES = ("35", "(38, 42)", "(8, 23)", "(27, 32)", "13", "(38, 48)")
UTKFACE_TO_RACE = {0: ("White",), 1: ("Black",), 2: ("East Asian", "Southeast Asian"), 3: ("Indian",),
                   4: ("Latino_Hispanic", "Middle Eastern", "Southeast Asian")}


# --------------------------------------------------------------------------------------------- identities
@dataclass(frozen=True)
class FaceParams:
    """One identity: everything about a face that stays the same from image to image.

    Lengths are fractions of the head's width (``W``) or height (``H``); colours are RGB.
    """

    gender: str  # constants.FAIRFACE_GENDERS
    race: str  # constants.FAIRFACE_RACES
    age: int  # years
    head_ratio: float  # W / H
    jaw: float  # 0 round .. 1 square
    skin: RGB
    eye_size: float  # eye width / W
    eye_spacing: float  # eye centre to face centre / W
    eye_openness: float  # eye height / eye width
    eye_line: float  # eye height from the top of the head / H
    eye_colour: RGB
    nose_length: float  # / H
    nose_width: float  # / W
    mouth_width: float  # / W
    lip_thickness: float
    lip_colour: RGB
    hair_style: str  # a key of HAIR_STYLES[gender]
    hair_colour: RGB
    hair_name: str  # a key of HAIR_COLOURS
    hair_volume: float
    hairline: float  # / H from the top of the head
    part: float  # -1 left .. 1 right
    brow_thickness: float  # / H
    brow_tilt: float
    beard: float  # stubble darkness 0..1
    moustache: bool
    goatee: bool
    grey: float  # 0..1
    wrinkles: float  # 0..1
    glasses: bool
    frame_colour: RGB
    earrings: bool
    blush: float
    eye_shadow: RGB | None
    mole: tuple[float, float] | None  # (x / W, y / H) from the face centre

    @property
    def child(self) -> float:
        return _childness(self.age)

    @property
    def lipstick(self) -> bool:
        return self.lip_colour in LIPSTICKS


def _childness(age: int) -> float:
    """1 for a baby, 0 from 14 years on: rounder head, lower and larger eyes, smaller nose and mouth."""
    return float(np.clip((14 - age) / 12, 0, 1))


def _mix(a, b, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _shade(colour, k: float) -> RGB:
    return tuple(int(np.clip(c * k, 0, 255)) for c in colour)


def _pick(rng: np.random.Generator, options, weights=None):
    keys = list(options)
    w = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return keys[int(rng.choice(len(keys), p=w))]


def sample_age(rng: np.random.Generator) -> int:
    """An age in years distributed like FairFace's age bins."""
    lo, hi = FAIRFACE_AGE_SPANS[int(rng.choice(len(FAIRFACE_AGE_SPANS), p=FAIRFACE_AGE_WEIGHTS))]
    return int(rng.integers(lo, hi + 1))


def fairface_age_bin(age: int) -> str:
    """The FairFace age bin (``constants.FAIRFACE_AGES``) holding ``age`` years."""
    return next(b for b, (_, hi) in zip(C.FAIRFACE_AGES, FAIRFACE_AGE_SPANS) if age <= hi or hi == 90)


def _hair_style(rng: np.random.Generator, gender: str, age: int) -> str:
    if age <= 2:
        return "buzz"
    styles = dict(HAIR_STYLES[gender])
    if gender == "Male":
        styles["bald"] *= 1 + 6 * np.clip((age - 35) / 35, 0, 1)
    return _pick(rng, styles, list(styles.values()))


def sample_identity(rng: np.random.Generator, gender: str | None = None, race: str | None = None,
                    age: int | None = None) -> FaceParams:
    """Draw one identity; ``gender``/``race``/``age`` (FairFace vocabularies, years) fix those traits."""
    u = rng.uniform
    gender = gender or _pick(rng, C.FAIRFACE_GENDERS, (0.53, 0.47))
    race = race or _pick(rng, C.FAIRFACE_RACES, (0.19, 0.14, 0.15, 0.14, 0.12, 0.14, 0.12))
    age = sample_age(rng) if age is None else int(age)
    male, child = gender == "Male", _childness(age)
    adult_male = male and age >= 16
    light = race in LIGHT_FEATURED
    hair_name = _pick(rng, HAIR_COLOURS, HAIR_WEIGHTS[light])
    grey = float(np.clip((age - 38) / 32 + rng.normal(0, 0.12), 0, 1)) if age > 35 else 0.0
    hair = _mix(_shade(HAIR_COLOURS[hair_name], u(0.85, 1.15)), (196, 196, 200), grey)
    skin = _mix(*SKIN[race], u(0, 1))
    lips = _mix(_shade(skin, 0.78), (170, 70, 70), 0.35 + 0.15 * (not male))
    if not male and age >= 16 and u() < 0.55:
        lips = LIPSTICKS[int(rng.integers(len(LIPSTICKS)))]
    style = _hair_style(rng, gender, age)
    wide_nose = race in ("Black", "Indian")
    return FaceParams(
        gender=gender, race=race, age=age,
        head_ratio=u(0.72, 0.8) + 0.05 * male + 0.12 * child,
        jaw=(u(0.45, 1.0) if adult_male else u(0.0, 0.35)) * (1 - child),
        skin=skin,
        eye_size=u(0.17, 0.23) + 0.05 * child,
        eye_spacing=u(0.19, 0.25),
        eye_openness=u(*EYE_OPENNESS.get(race, DEFAULT_OPENNESS)) * (1 + 0.25 * child),
        eye_line=u(0.44, 0.5) + 0.1 * child,
        eye_colour=EYE_COLOURS[_pick(rng, EYE_COLOURS, EYE_WEIGHTS[light])],
        nose_length=u(0.17, 0.25) * (1 - 0.3 * child),
        nose_width=(u(0.16, 0.23) + 0.05 * wide_nose) * (1 - 0.25 * child),
        mouth_width=u(0.3, 0.44) * (1 - 0.15 * child),
        lip_thickness=u(0.6, 1.1) + 0.3 * (race == "Black"),
        lip_colour=lips,
        hair_style=style, hair_colour=hair, hair_name=hair_name,
        hair_volume=u(0.15, 0.25) if style == "curly" else u(0.03, 0.1),
        hairline=u(0.1, 0.2) + (u(0.05, 0.15) if adult_male and age > 40 else 0) + 0.1 * child,
        part=u(-0.5, 0.5),
        brow_thickness=(u(0.035, 0.055) if adult_male else u(0.018, 0.032)),
        brow_tilt=u(-1, 1),
        beard=u(0.45, 1.0) if adult_male and u() < 0.7 else 0.0,
        moustache=adult_male and u() < 0.2,
        goatee=adult_male and u() < 0.12,
        grey=grey,
        wrinkles=float(np.clip((age - 40) / 35, 0, 1)),
        glasses=age > 8 and u() < 0.1 + 0.25 * (age > 55),
        frame_colour=_pick(rng, [(20, 20, 20), (90, 60, 30), (150, 150, 160), (120, 30, 40)]),
        earrings=not male and u() < 0.4,
        blush=u(0.2, 0.6) if not male else u(0, 0.15),
        eye_shadow=_pick(rng, EYE_SHADOWS) if lips in LIPSTICKS and u() < 0.7 else None,
        mole=(u(-0.3, 0.3), u(0.0, 0.3)) if u() < 0.3 else None,
    )


# ------------------------------------------------------------------------------------------------ drawing
@dataclass
class _Geometry:
    """Where the parts of one face land on the drawing canvas (pixels)."""

    cx: float
    cy: float
    W: float
    H: float

    @property
    def top(self) -> float:
        return self.cy - self.H / 2


def _head_outline(p: FaceParams, g: _Geometry, grow: float = 0.0, n: int = 48) -> list[tuple[float, float]]:
    """Head outline: an ellipse on top, squarer (``jaw``) and tapered below, grown by ``grow`` x H."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    s, c = np.sin(t), np.cos(t)
    lower = s > 0
    power = np.where(lower, 2 / (2 + 2.5 * p.jaw), 1.0)
    x = np.sign(c) * np.abs(c) ** power
    y = np.sign(s) * np.abs(s) ** power
    x = x * np.where(lower, 1 - 0.22 * (1 - 0.6 * p.jaw) * np.clip(s, 0, 1) ** 3, 1)
    rx, ry = g.W / 2 + grow * g.H, g.H / 2 + grow * g.H
    return list(zip(g.cx + rx * x, g.cy + ry * y))


def _background(rng: np.random.Generator, n: int) -> Image.Image:
    lo, hi = BACKGROUND_LEVELS
    base = _mix(rng.uniform(lo, hi, 3), np.full(3, rng.uniform(lo, hi)), rng.uniform(0.3, 0.8))
    blotches = np.clip(base + rng.normal(0, 30, (4, 4, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(blotches).resize((n, n), Image.BICUBIC)
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(0, 4))):
        x, y, w, h = rng.uniform(0, n, 4)
        d.rectangle([x, y, x + w / 2, y + h / 2], fill=(*map(int, rng.integers(0, 256, 3)), 70))
    return img


def _body(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, rng: np.random.Generator, n: int) -> None:
    cloth = tuple(int(v) for v in rng.integers(20, 235, 3))
    neck, shoulders = (0.24, 1.3) if p.gender == "Male" and p.age >= 14 else (0.18, 1.0)
    neck *= g.W
    d.rectangle([g.cx - neck, g.cy, g.cx + neck, n], fill=_shade(p.skin, 0.84))
    reach = shoulders * g.W
    d.ellipse([g.cx - reach, g.cy + 0.6 * g.H, g.cx + reach, g.cy + 1.7 * g.H], fill=cloth)
    d.polygon([(g.cx - neck, g.cy + 0.6 * g.H), (g.cx + neck, g.cy + 0.6 * g.H), (g.cx, g.cy + 0.78 * g.H)],
              fill=_shade(p.skin, 0.84))


def _back_hair(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, hair: RGB) -> None:
    if p.hair_style not in BACK_HAIR or (p.hair_style == "curly" and p.gender == "Male"):
        return
    reach = BACK_HAIR[p.hair_style]
    half = g.W / 2 + (0.12 + p.hair_volume) * g.H
    d.rounded_rectangle([g.cx - half, g.top - p.hair_volume * g.H, g.cx + half, g.cy + reach * g.H],
                        radius=half * 0.9, fill=_shade(hair, 0.8))


def _ears(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, eye_y: float) -> None:
    if p.hair_style in ("long", "bob", "bangs"):
        return
    w, h, y = 0.08 * g.W, 0.12 * g.H, eye_y + 0.08 * g.H
    for side in (-1, 1):
        x = g.cx + side * g.W / 2
        d.ellipse([x - w, y - h, x + w, y + h], fill=_shade(p.skin, 0.92))
        d.ellipse([x - w * 0.6, y - h * 0.6, x + w * 0.6, y + h * 0.6], outline=_shade(p.skin, 0.72), width=2)
        if p.earrings:
            r = 0.025 * g.H
            d.ellipse([x - r, y + h - r / 2, x + r, y + h + 1.5 * r], fill=(230, 200, 90))


def _hair_cap(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, hair: RGB, eye_y: float,
              rng: np.random.Generator) -> None:
    """Hair on top of the head: the grown outline above a hairline curve (arched, flat for bangs)."""
    style = p.hair_style
    if style == "bald":
        for side in (-1, 1):
            x = g.cx + side * g.W * 0.45
            d.ellipse([x - 0.07 * g.W, eye_y - 0.12 * g.H, x + 0.07 * g.W, eye_y + 0.02 * g.H], fill=hair)
        return
    if style == "buzz":
        hair = _mix(hair, p.skin, 0.45 + 0.3 * p.child)
    side_y = eye_y - (0.02 if style in LONG_STYLES else 0.09) * g.H
    hairline = g.top + (0.32 if style == "bangs" else p.hairline) * g.H
    flat = 6 if style == "bangs" else 2
    vol = p.hair_volume * (0.4 if style == "buzz" else 1)
    ring = _head_outline(p, g, grow=vol, n=64)
    outline = [(x, y) for x, y in ring[16:] + ring[:16] if y <= side_y]  # from the chin: left, top, right
    if style == "curly":
        bump = 0.03 * g.H * np.sin(np.linspace(0, 18 * np.pi, len(outline)))
        outline = [(x + b * np.sign(x - g.cx), y - abs(b)) for (x, y), b in zip(outline, bump)]
    half = 0.97 * (outline[-1][0] - outline[0][0]) / 2
    u = np.linspace(1, -1, 24)
    reach = np.abs(u - p.part) / np.where(u > p.part, 1 - p.part, 1 + p.part)
    ys = hairline + (side_y - hairline) * np.clip(reach, 0, 1) ** flat
    d.polygon(outline + list(zip(g.cx + u * half, ys)), fill=hair)
    if style in LONG_STYLES or (style == "curly" and p.gender == "Female"):
        for side in (-1, 1):
            edge = g.cx + side * (g.W / 2 + 0.03 * g.H)
            top = side_y - 0.05 * g.H
            d.polygon([(edge, top), (edge - side * 0.16 * g.W, top), (edge - side * 0.1 * g.W,
                       g.cy + 0.2 * g.H), (edge + side * 0.02 * g.W, g.cy + 0.38 * g.H)], fill=hair)
    if style == "bun":
        r = 0.17 * g.W
        d.ellipse([g.cx - r, g.top - vol * g.H - 1.6 * r, g.cx + r, g.top - vol * g.H + 0.3 * r], fill=hair)
    d.line([(g.cx + p.part * g.W * 0.3, hairline - 0.02 * g.H), (g.cx + p.part * g.W * 0.45, g.top)],
           fill=_shade(hair, rng.uniform(1.1, 1.4)) + (90,), width=2)


def _eyes(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, eye_y: float, expression: str,
          gaze: float) -> None:
    ew = p.eye_size * g.W / 2
    eh = ew * p.eye_openness * (0.75 if expression == "smile" else 1)
    female = p.gender == "Female" and p.age >= 12
    lid = (30, 22, 20)
    brow_colour = _shade(p.hair_colour, 0.7) if p.hair_name != "blond" else (130, 100, 60)
    for side in (-1, 1):
        ex = g.cx + side * p.eye_spacing * g.W
        if p.eye_shadow:
            d.ellipse([ex - 1.1 * ew, eye_y - eh - 0.06 * g.H, ex + 1.1 * ew, eye_y + 0.3 * eh],
                      fill=p.eye_shadow + (150,))
        d.ellipse([ex - ew, eye_y - eh, ex + ew, eye_y + eh], fill=(240, 236, 230))
        ir = 0.5 * ew
        ix = ex + gaze * ew * 0.35
        ih = min(ir, eh * 0.95)
        d.ellipse([ix - ir, eye_y - ih, ix + ir, eye_y + ih], fill=p.eye_colour)
        d.ellipse([ix - ir * 0.45, eye_y - ih * 0.45, ix + ir * 0.45, eye_y + ih * 0.45], fill=(12, 10, 10))
        d.ellipse([ix - ir * 0.35, eye_y - ih * 0.5, ix - ir * 0.05, eye_y - ih * 0.2], fill=(250, 250, 250))
        d.arc([ex - ew, eye_y - eh, ex + ew, eye_y + eh], 180, 360, fill=lid, width=3 if female else 2)
        if p.race not in ("East Asian",):
            d.arc([ex - ew, eye_y - eh * 1.9, ex + ew, eye_y + eh * 0.6], 200, 340,
                  fill=_shade(p.skin, 0.75) + (160,), width=1)
        if female:
            outer = ex + side * ew
            d.line([(outer, eye_y - eh * 0.3), (outer + side * ew * 0.35, eye_y - eh)], fill=lid, width=2)
        brow_y = eye_y - eh - 0.06 * g.H
        tilt = p.brow_tilt * 0.025 * g.H
        pts = [(ex - side * ew * 0.95, brow_y + tilt), (ex, brow_y - 0.02 * g.H),
               (ex + side * ew * 1.2, brow_y - tilt * 0.5 + 0.01 * g.H)]
        d.line(pts, fill=_mix(brow_colour, p.hair_colour, p.grey), joint="curve",
               width=max(2, round(p.brow_thickness * g.H)))


def _nose(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, eye_y: float, tip: float) -> None:
    nw = p.nose_width * g.W / 2
    shade = _shade(p.skin, 0.72)
    d.line([(g.cx + 0.25 * nw, eye_y + 0.04 * g.H), (g.cx + 0.45 * nw, tip - 0.04 * g.H)],
           fill=shade + (110,), width=2)
    d.arc([g.cx - nw, tip - 0.7 * nw, g.cx + nw, tip + 0.45 * nw], 15, 165, fill=shade, width=2)
    r = 0.22 * nw
    for side in (-1, 1):
        x = g.cx + side * 0.5 * nw
        d.ellipse([x - r, tip - 0.5 * r, x + r, tip + 0.6 * r], fill=_shade(p.skin, 0.45))


def _mouth(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, y: float, expression: str) -> None:
    mw = p.mouth_width * g.W / 2
    lt = p.lip_thickness * 0.03 * g.H
    dark = (70, 25, 25)
    if expression == "neutral":
        bow = ((-1, 0), (-0.35, 1), (0, 0.6), (0.35, 1), (1, 0))
        upper = [(g.cx + k * mw, y - lift * lt) for k, lift in bow]
        d.polygon(upper, fill=p.lip_colour)
        d.chord([g.cx - 0.8 * mw, y - 1.2 * lt, g.cx + 0.8 * mw, y + 1.3 * lt], 0, 180, fill=p.lip_colour)
        d.line([(g.cx - mw, y), (g.cx, y + 0.15 * lt), (g.cx + mw, y)], fill=dark, width=2, joint="curve")
    elif expression == "smile":
        box = [g.cx - mw * 1.05, y - 0.07 * g.H, g.cx + mw * 1.05, y + 0.07 * g.H]
        d.chord(box, 0, 180, fill=p.lip_colour)
        inner = [box[0] + 0.12 * mw, box[1] + 0.6 * lt, box[2] - 0.12 * mw, box[3] - 1.3 * lt]
        d.chord(inner, 0, 180, fill=dark)
        d.chord([inner[0], inner[1], inner[2], inner[3] - 0.03 * g.H], 0, 180, fill=(235, 232, 225))
    else:
        d.ellipse([g.cx - 0.7 * mw, y - 1.3 * lt, g.cx + 0.7 * mw, y + 2.2 * lt], fill=p.lip_colour)
        d.ellipse([g.cx - 0.5 * mw, y - 0.5 * lt, g.cx + 0.5 * mw, y + 1.4 * lt], fill=dark)


def _facial_hair(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, tip: float, mouth_y: float) -> None:
    stubble = _mix(p.hair_colour, (40, 40, 46), 0.5)
    mw = p.mouth_width * g.W / 2
    if p.beard:
        lower = [(x, y) for x, y in _head_outline(p, g, n=64) if y >= tip - 0.12 * g.H]
        cheeks = [(g.cx + k * g.W, tip + abs(k) * 0.12 * g.H) for k in (-0.36, -0.18, 0.0, 0.18, 0.36)]
        d.polygon(lower + cheeks, fill=stubble + (int(150 * p.beard),))
    if p.moustache:
        d.polygon([(g.cx - 1.05 * mw, mouth_y), (g.cx - 0.3 * mw, tip + 0.025 * g.H), (g.cx + 0.3 * mw,
                   tip + 0.025 * g.H), (g.cx + 1.05 * mw, mouth_y), (g.cx, mouth_y - 0.035 * g.H)],
                  fill=p.hair_colour)
    if p.goatee:
        d.ellipse([g.cx - 0.5 * mw, mouth_y + 0.05 * g.H, g.cx + 0.5 * mw, g.cy + 0.5 * g.H],
                  fill=p.hair_colour)


def _skin_marks(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, eye_y: float, tip: float,
                mouth_y: float) -> None:
    """Blush, wrinkles and a mole: age lines grow with ``wrinkles``."""
    if p.blush:
        for side in (-1, 1):
            x, r = g.cx + side * 0.27 * g.W, 0.09 * g.W
            d.ellipse([x - r, tip - 0.7 * r, x + r, tip + 0.7 * r], fill=(225, 90, 100, int(70 * p.blush)))
    if p.wrinkles:
        line = _shade(p.skin, 0.62) + (int(60 + 150 * p.wrinkles),)
        for k in range(1 + int(3 * p.wrinkles)):
            y = g.top + (0.2 + 0.05 * k) * g.H
            d.arc([g.cx - 0.25 * g.W, y, g.cx + 0.25 * g.W, y + 0.1 * g.H], 200, 340, fill=line, width=2)
        nw, mw = p.nose_width * g.W / 2, p.mouth_width * g.W / 2
        for side in (-1, 1):
            fold = [(g.cx + side * 1.15 * nw, tip - 0.02 * g.H),
                    (g.cx + side * 1.15 * mw, mouth_y + 0.04 * g.H)]
            d.line(fold, fill=line, width=2)
            x = g.cx + side * (p.eye_spacing * g.W + p.eye_size * g.W / 2)
            for dy in (-0.02, 0.02):
                crow = [(x + side * 0.01 * g.W, eye_y + dy * g.H),
                        (x + side * 0.07 * g.W, eye_y + 2 * dy * g.H)]
                d.line(crow, fill=line, width=1)
            ex = g.cx + side * p.eye_spacing * g.W
            d.arc([ex - 0.08 * g.W, eye_y, ex + 0.08 * g.W, eye_y + 0.08 * g.H], 20, 160, fill=line, width=1)
    if p.mole:
        x, y, r = g.cx + p.mole[0] * g.W, g.cy + p.mole[1] * g.H, 0.015 * g.H + 1
        d.ellipse([x - r, y - r, x + r, y + r], fill=_shade(p.skin, 0.35))


def _glasses(d: ImageDraw.ImageDraw, p: FaceParams, g: _Geometry, eye_y: float) -> None:
    ew = p.eye_size * g.W / 2
    rw, rh = 1.35 * ew, 0.95 * ew
    for side in (-1, 1):
        ex = g.cx + side * p.eye_spacing * g.W
        d.rounded_rectangle([ex - rw, eye_y - rh, ex + rw, eye_y + rh], radius=rh * 0.6,
                            outline=p.frame_colour, width=3, fill=(200, 220, 240, 40))
        d.line([(ex + side * rw, eye_y - 0.3 * rh), (g.cx + side * g.W / 2, eye_y - 0.4 * rh)],
               fill=p.frame_colour, width=2)
    inner = p.eye_spacing * g.W - rw
    d.line([(g.cx - inner, eye_y - 0.3 * rh), (g.cx + inner, eye_y - 0.3 * rh)], fill=p.frame_colour, width=2)


def _hat(d: ImageDraw.ImageDraw, g: _Geometry, rng: np.random.Generator) -> None:
    colour = tuple(int(v) for v in rng.integers(20, 235, 3))
    d.chord([g.cx - 0.6 * g.W, g.top - 0.18 * g.H, g.cx + 0.6 * g.W, g.top + 0.5 * g.H], 180, 360,
            fill=colour)
    d.rounded_rectangle([g.cx - 0.72 * g.W, g.top + 0.12 * g.H, g.cx + 0.72 * g.W, g.top + 0.19 * g.H],
                        radius=3, fill=_shade(colour, 0.8))


def _pose(img: Image.Image, rng: np.random.Generator, out: int) -> Image.Image:
    """Rotate, scale and shift the canvas into an ``out`` x ``out`` frame around its centre."""
    n = img.width
    angle = np.deg2rad(np.clip(rng.normal(0, 6), -15, 15))
    k = 1 / rng.uniform(0.9, 1.1)
    sx, sy = np.clip(rng.normal(0, 0.04 * out, 2), -0.09 * out, 0.09 * out)
    a, b = k * np.cos(angle), k * np.sin(angle)
    c0 = out / 2 + sx
    r0 = out / 2 + sy
    data = (a, b, n / 2 - a * c0 - b * r0, -b, a, n / 2 + b * c0 - a * r0)
    return img.transform((out, out), Image.AFFINE, data, resample=Image.BILINEAR)


@lru_cache
def _grid(n: int) -> np.ndarray:
    return np.mgrid[0:1:n * 1j, 0:1:n * 1j].astype(np.float32)


def _light(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Directional light, overall brightness, a colour cast and sensor noise."""
    yy, xx = _grid(img.width)
    phi = rng.uniform(0, 2 * np.pi)
    slope = (xx - 0.5) * np.cos(phi) + (yy - 0.5) * np.sin(phi)
    gain = rng.uniform(0.75, 1.15) * (1 + rng.uniform(0, 0.5) * slope)
    cast = rng.normal(1, 0.04, 3).astype(np.float32)
    arr = np.asarray(img, np.float32) * gain[..., None] * cast
    arr += rng.normal(0, rng.uniform(1, 7), arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8))) if rng.uniform() < 0.2 else out


def draw_face(params: FaceParams, rng: np.random.Generator, size: int = 64, expression: str | None = None,
              hat: bool = False) -> Image.Image:
    """One RGB image of identity ``params``; pose, light, background, noise and expression vary with ``rng``.

    ``expression`` is one of :data:`EXPRESSIONS` (drawn from ``rng`` when None); ``hat`` adds a hat.
    """
    p = params
    expression = expression or _pick(rng, EXPRESSIONS, (0.55, 0.35, 0.1))
    canvas, frame = round(3.2 * size), 2 * size  # drawn at twice the size, with room to rotate
    head = FACE_HEIGHT * frame
    g = _Geometry(cx=canvas / 2, cy=canvas / 2 - 0.02 * frame, W=head * p.head_ratio, H=head)
    hair = _shade(p.hair_colour, rng.uniform(0.92, 1.08))
    eye_y = g.top + p.eye_line * g.H
    img = _background(rng, canvas)
    d = ImageDraw.Draw(img, "RGBA")
    _back_hair(d, p, g, hair)
    _body(d, p, g, rng, canvas)
    _ears(d, p, g, eye_y)
    d.polygon(_head_outline(p, g), fill=p.skin)
    tip = eye_y + p.nose_length * g.H
    mouth_y = tip + (0.13 - 0.04 * p.child) * g.H
    _skin_marks(d, p, g, eye_y, tip, mouth_y)
    _facial_hair(d, p, g, tip, mouth_y)
    _eyes(d, p, g, eye_y, expression, float(np.clip(rng.normal(0, 0.3), -0.8, 0.8)))
    _nose(d, p, g, eye_y, tip)
    _mouth(d, p, g, mouth_y, expression)
    _hair_cap(d, p, g, hair, eye_y, rng)
    if p.glasses:
        _glasses(d, p, g, eye_y)
    if hat:
        _hat(d, g, rng)
    return _light(_pose(img, rng, frame).reduce(2), rng)


# ------------------------------------------------------------------------------------------- distortions
def _rain(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out, "RGBA")
    n, slant = img.width, rng.uniform(-0.3, 0.3)
    for x, y, length in zip(*rng.uniform(0, 1, (3, 60))):
        x0, y0, dy = x * n, y * n, (0.08 + 0.12 * length) * n
        d.line([(x0, y0), (x0 + slant * dy, y0 + dy)], fill=(225, 225, 235, 150), width=1)
    return out.filter(ImageFilter.GaussianBlur(0.4))


def _resized(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    small = round(img.width * rng.uniform(0.2, 0.3))
    return img.resize((small, small), Image.BILINEAR).resize(img.size, Image.NEAREST)


def _array_op(fn):
    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return Image.fromarray(np.clip(fn(np.asarray(img, np.float32), rng), 0, 255).astype(np.uint8))
    return apply


DISTORTIONS = {
    "blur": lambda img, rng: img.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.2))),
    "fog": _array_op(lambda a, rng: a + (rng.uniform(200, 235) - a) * rng.uniform(0.45, 0.65)),
    "lowlight": _array_op(lambda a, rng: 255 * (a / 255) ** rng.uniform(1.4, 1.9) * rng.uniform(0.25, 0.4)
                          + rng.normal(0, 3, a.shape)),
    "noise": _array_op(lambda a, rng: a + rng.normal(0, rng.uniform(18, 30), a.shape)),
    "rain": _rain,
    "resized": _resized,
    "overexposed": _array_op(lambda a, rng: a * rng.uniform(1.5, 1.8) + rng.uniform(40, 70)),
}
assert list(DISTORTIONS) == C.FACECOM_DISTORTIONS


def distort(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """``img`` under one of FACECOM's adverse conditions (``constants.FACECOM_DISTORTIONS``)."""
    if kind not in DISTORTIONS:
        raise ValueError(f"Unknown distortion {kind!r}; expected one of {C.FACECOM_DISTORTIONS}.")
    return DISTORTIONS[kind](img, rng)


# ---------------------------------------------------------------------------------------------- writers
def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent generator for (seed, keys): the same keys give the same draws in any order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys)])


@dataclass
class _Image:
    """One image to write: an identity drawn at ``path`` (plus distorted copies of the same drawing)."""

    path: Path
    face: FaceParams
    key: tuple
    expression: str | None = None
    hat: bool = False
    blur: bool = False
    distortion: str | None = None
    copies: dict[str, Path] = field(default_factory=dict)  # distortion -> path


def _write(images: list[_Image], seed: int, desc: str, size: int) -> None:
    for item in tqdm(images, desc=f"demo {desc}", leave=False, mininterval=1):
        rng = _rng(seed, desc, *item.key)
        img = draw_face(item.face, rng, size, expression=item.expression, hat=item.hat)
        if item.blur:
            img = img.filter(ImageFilter.GaussianBlur(1.5))
        if item.distortion:
            img = distort(img, item.distortion, rng)
        item.path.parent.mkdir(parents=True, exist_ok=True)
        img.save(item.path, quality=JPEG_QUALITY)
        for kind, path in item.copies.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            distort(img, kind, rng).save(path, quality=JPEG_QUALITY)


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _csv(path: Path, header: list[str], rows: list[list], sep: str = ",") -> None:
    _write_text(path, [sep.join(header)] + [sep.join(map(str, row)) for row in rows])


def _identity_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct identity names like the real ``n000123`` (never the no-match name ``n000000``)."""
    return [f"n{i:06d}" for i in sorted(rng.choice(np.arange(1, 9999), n, replace=False))]


def _start(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL).touch()
    return root


def _finish(root: Path, name: str, seed: int) -> Path:
    (root / MARKER).write_text(f"synthetic demo twin of {name}, seed {seed}; written by helpers.demo\n")
    (root / PARTIAL).unlink()
    return root


def make_hw2p2(root: Path, seed: int = 0, n_identities: int = 24, n_train: int = 16, n_dev: int = 4,
               n_test: int = 60, n_known: int = 2, n_unknown: int = 40, n_pair_identities: int = 16,
               n_pairs: int = 40, size: int = 64) -> Path:
    """CMU 11-785 HW2P2: classification train/dev/test, verification known/unknown, and the pairs variant."""
    root = _start(Path(root))
    rng = _rng(seed, "hw2p2")
    n_unseen = n_unknown // 2
    names = _identity_names(rng, n_identities + 2 * n_unseen + n_pair_identities)
    known, pair_ids = names[:n_identities], names[n_identities + 2 * n_unseen:]
    faces = {name: sample_identity(_rng(seed, "hw2p2 identity", k)) for k, name in enumerate(names)}
    cls, ver, pairs = root / C.HW2P2_CLS, root / C.HW2P2_VER, root / C.HW2P2_PAIRS
    images = []
    for name in known:
        for j in range(n_train + n_dev):
            split = "train" if j < n_train else "dev"
            images.append(_Image(cls / split / name / f"{j + 1:04d}_01.jpg", faces[name], (name, j)))
        images += [_Image(ver / "known" / name / f"{j + 1:04d}_01.jpg", faces[name], (name, "known", j))
                   for j in range(n_known)]
    test = [known[int(i)] for i in rng.integers(0, n_identities, n_test)]
    images += [_Image(cls / "test" / f"{i:05d}.jpg", faces[name], ("test", i)) for i, name in enumerate(test)]
    truth = {}
    for split, unseen in (("unknown_dev", names[n_identities:n_identities + n_unseen]),
                          ("unknown_test", names[n_identities + n_unseen:n_identities + 2 * n_unseen])):
        who = list(rng.choice(known, n_unknown - n_unseen, replace=False)) + unseen
        who = [str(w) for w in rng.permutation(who)]
        images += [_Image(ver / split / f"{i:05d}.jpg", faces[w], (split, i)) for i, w in enumerate(who)]
        truth[split] = [w if w in known else C.HW2P2_NO_MATCH for w in who]
    _csv(ver / "verification_dev.csv", ["label"], [[label] for label in truth["unknown_dev"]])
    _csv(cls / "classification_sample_submission.csv", ["id", "label"],
         [[f"{i:05d}.jpg", 0] for i in range(n_test)])
    _csv(ver / "verification_sample_submission.csv", ["id", "label"],
         [[i, C.HW2P2_NO_MATCH] for i in range(n_unknown)])
    per_id = 4
    order = rng.permutation(len(pair_ids) * per_id)
    owner = {f"{int(pos):05d}.jpg": pair_ids[k // per_id] for k, pos in enumerate(order)}
    images += [_Image(pairs / file, faces[w], ("pairs", file)) for file, w in sorted(owner.items())]
    files = sorted(owner)
    half = len(pair_ids) // 2
    val_files = [f for f in files if pair_ids.index(owner[f]) < half]
    test_files = [f for f in files if pair_ids.index(owner[f]) >= half]
    val = _pairs(rng, val_files, owner, n_pairs)
    _write_text(pairs / "val_pairs.txt", [f"{C.HW2P2_PAIRS}/{a} {C.HW2P2_PAIRS}/{b} {m}" for a, b, m in val])
    test_pairs = _pairs(rng, test_files, owner, n_pairs)
    _write_text(pairs / "test_pairs.txt",
                [f"{C.HW2P2_PAIRS}/{a} {C.HW2P2_PAIRS}/{b}" for a, b, _ in test_pairs])
    _write(images, seed, "hw2p2", size)
    return _finish(root, "hw2p2", seed)


def _pairs(rng: np.random.Generator, files: list[str], owner: dict[str, str],
           n: int) -> list[tuple[str, str, int]]:
    """``n`` balanced pairs of distinct files: alternately the same identity (1) and different ones (0)."""
    out = []
    while len(out) < n:
        a, b = (files[int(i)] for i in rng.choice(len(files), 2, replace=False))
        match = int(owner[a] == owner[b])
        if match == (len(out) % 2 == 0):
            out.append((a, b, match))
    return out


def make_cs405(root: Path, seed: int = 0, n_identities: int = 24, n_train: int = 16, n_test: int = 60,
               size: int = 64) -> Path:
    """CS 405 Kaggle competition: ``dataset/train/<identity>``, ``dataset/test``, sample_submission.csv."""
    root = _start(Path(root))
    rng = _rng(seed, "cs405")
    names = _identity_names(rng, n_identities)
    faces = {name: sample_identity(_rng(seed, "cs405 identity", k)) for k, name in enumerate(names)}
    images = [_Image(root / "dataset" / "train" / name / f"{j:04d}.jpg", faces[name], (name, j))
              for name in names for j in range(n_train)]
    test = [names[int(i)] for i in rng.integers(0, n_identities, n_test)]
    images += [_Image(root / "dataset" / "test" / f"{i:05d}.jpg", faces[w], ("test", i))
               for i, w in enumerate(test)]
    _csv(root / "sample_submission.csv", ["image_name", "label"],
         [[f"{i:05d}.jpg", names[0]] for i in range(n_test)])
    _write(images, seed, "cs405", size)
    return _finish(root, "cs405", seed)


def make_fairface(root: Path, seed: int = 0, n_train: int = 600, n_val: int = 150, size: int = 64) -> Path:
    """FairFace: ``train/``, ``val/`` and ``fairface_label_{train,val}.csv``, one identity per image."""
    root = _start(Path(root))
    images = []
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(1, n + 1):
            rng = _rng(seed, "fairface identity", split, i)
            face = sample_identity(rng)
            rows.append([f"{split}/{i}.jpg", fairface_age_bin(face.age), face.gender, face.race,
                         str(bool(rng.uniform() < 0.5))])
            images.append(_Image(root / split / f"{i}.jpg", face, (split, i)))
        _csv(root / f"fairface_label_{split}.csv", C.FAIRFACE_COLUMNS, rows)
    _write(images, seed, "fairface", size)
    return _finish(root, "fairface", seed)


def make_adience(root: Path, seed: int = 0, users_per_fold: int = 4, size: int = 64) -> Path:
    """Adience: ``fold_{0..4}_data.txt`` and ``faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<image>``.

    Each fold holds a few rows with an age of ``None`` or an irregular age, a ``u`` or empty gender, and
    fold 1 one row whose image is missing, as in the real data.
    """
    root = _start(Path(root))
    images = []
    for fold in range(C.ADIENCE_FOLDS):
        rng = _rng(seed, "adience", fold)
        rows = []
        for _ in range(users_per_fold):
            user = f"{int(rng.integers(10**7, 10**8))}@N0{int(rng.integers(0, 9))}"
            for face_id in range(1, int(rng.integers(2, 5)) + 1):
                group = int(rng.integers(len(C.ADIENCE_AGES)))
                gender = C.ADIENCE_GENDERS[int(rng.integers(2))]
                face = sample_identity(rng, gender="Male" if gender == "m" else "Female",
                                       age=int(rng.integers(*ADIENCE_AGE_SPANS[group]) + 1))
                for _ in range(int(rng.integers(3, 7))):
                    photo, secret = int(rng.integers(10**10, 10**11)), int(rng.integers(16**9, 16**10))
                    original = f"{photo}_{secret:x}_o.jpg"
                    box = [int(v) for v in rng.integers(0, 1500, 4)] + [int(rng.integers(-180, 180)),
                                                                           int(rng.integers(-45, 45)),
                                                                           int(rng.integers(0, 200))]
                    rows.append([user, original, face_id, C.ADIENCE_AGES[group], gender, *box])
                    path = root / "faces" / user / f"coarse_tilt_aligned_face.{face_id}.{original}"
                    images.append(_Image(path, face, (fold, len(rows))))
        odd = rng.choice(len(rows), 4, replace=False)
        rows[odd[0]][3] = "None"
        rows[odd[1]][3] = ADIENCE_IRREGULAR_AGES[int(rng.integers(len(ADIENCE_IRREGULAR_AGES)))]
        rows[odd[2]][4] = "u" if fold % 2 == 0 else ""
        if fold == 1:
            user, original, face_id = rows[odd[3]][:3]
            missing = root / "faces" / user / f"coarse_tilt_aligned_face.{face_id}.{original}"
            images = [item for item in images if item.path != missing]
        _csv(root / f"fold_{fold}_data.txt", C.ADIENCE_COLUMNS, rows, sep="\t")
    _write(images, seed, "adience", size)
    return _finish(root, "adience", seed)


def _celeba_attributes(p: FaceParams, expression: str, hat: bool, blurry: bool,
                       rng: np.random.Generator) -> list[int]:
    """The 40 CelebA attributes (0/1) of one drawing; those not drawn are random."""
    known = {
        "5_o_Clock_Shadow": 0 < p.beard < 0.6, "Bald": p.hair_style == "bald",
        "Bangs": p.hair_style == "bangs", "Black_Hair": p.hair_name == "black" and p.grey < 0.5,
        "Blond_Hair": p.hair_name == "blond" and p.grey < 0.5,
        "Brown_Hair": "brown" in p.hair_name and p.grey < 0.5,
        "Gray_Hair": p.grey >= 0.5, "Blurry": blurry,
        "Eyeglasses": p.glasses, "Goatee": p.goatee, "Male": p.gender == "Male", "Mustache": p.moustache,
        "No_Beard": p.beard == 0 and not p.goatee, "Smiling": expression == "smile",
        "Mouth_Slightly_Open": expression != "neutral",
        "Narrow_Eyes": p.eye_openness < 0.4 or expression == "smile",
        "Pale_Skin": sum(p.skin) > 640, "Wearing_Hat": hat, "Wearing_Lipstick": p.lipstick,
        "Heavy_Makeup": p.eye_shadow is not None, "Wearing_Earrings": p.earrings, "Young": p.age < 40,
        "Rosy_Cheeks": p.blush > 0.5, "Bushy_Eyebrows": p.brow_thickness > 0.045,
        "Chubby": p.head_ratio > 0.84,
        "Oval_Face": p.jaw < 0.2, "Big_Nose": p.nose_width > 0.23, "Big_Lips": p.lip_thickness > 1.1,
        "Straight_Hair": p.hair_style in ("long", "bob", "bangs"), "Wavy_Hair": p.hair_style == "curly",
        "Receding_Hairline": p.hairline > 0.25, "Sideburns": p.beard > 0.6,
        "Bags_Under_Eyes": p.wrinkles > 0.3,
    }
    return [int(known[a]) if a in known else int(rng.uniform() < 0.2) for a in C.CELEBA_ATTRIBUTES]


def make_celeba(root: Path, seed: int = 0, n_identities: int = 30, kaggle: bool = False,
                size: int = 64) -> Path:
    """CelebA in torchvision's layout, or with ``kaggle=True`` in the Kaggle mirror's (nested folder, CSVs).

    Partitions split identities 70/15/15 and number the images train first, as the real files do.
    """
    root = _start(Path(root))
    rng = _rng(seed, "celeba")
    folder = root / "img_align_celeba" / ("img_align_celeba" if kaggle else "")
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 10178), n_identities, replace=False))
    held_out = n_identities * 15 // 100
    parts = np.repeat([0, 1, 2], [n_identities - 2 * held_out, held_out, held_out])
    images, rows = [], []
    for part in range(3):
        for k in np.flatnonzero(parts == part):
            face = sample_identity(_rng(seed, "celeba identity", int(k)))
            for _ in range(int(rng.integers(4, 10))):
                file = f"{len(rows) + 1:06d}.jpg"
                expression = _pick(rng, EXPRESSIONS, (0.5, 0.4, 0.1))
                hat, blurry = bool(rng.uniform() < 0.05), bool(rng.uniform() < 0.05)
                attrs = _celeba_attributes(face, expression, hat, blurry, rng)
                rows.append((file, ids[k], part, attrs))
                images.append(_Image(folder / file, face, (file,), expression, hat, blurry))
    if kaggle:
        _csv(root / "list_attr_celeba.csv", ["image_id", *C.CELEBA_ATTRIBUTES],
             [[f, *(2 * v - 1 for v in a)] for f, _, _, a in rows])
        _csv(root / "list_eval_partition.csv", ["image_id", "partition"], [[f, p] for f, _, p, _ in rows])
    else:
        _write_text(root / "list_attr_celeba.txt", [str(len(rows)), " ".join(C.CELEBA_ATTRIBUTES) + " "] +
                    [f"{f} " + " ".join(f"{2 * v - 1:2d}" for v in a) for f, _, _, a in rows])
        _write_text(root / "identity_CelebA.txt", [f"{f} {i}" for f, i, _, _ in rows])
        _write_text(root / "list_eval_partition.txt", [f"{f} {p}" for f, _, p, _ in rows])
    _write(images, seed, "celeba", size)
    return _finish(root, "celeba", seed)


def make_facecom(root: Path, seed: int = 0, task_a: dict[str, tuple[int, int]] | None = None,
                 task_b: dict[str, int] | None = None, n_clean: int = 3, size: int = 64) -> Path:
    """FACECOM: Task_A gender folders (male-heavy, some images distorted) and Task_B identities with
    clean images plus ``distortion/<stem>_<type>.jpg`` for each of the 7 types; val identities are new."""
    root = _start(Path(root))
    task_a = task_a or {"train": (120, 40), "val": (30, 10)}
    task_b = task_b or {"train": 12, "val": 6}
    images = []
    for split, counts in task_a.items():
        rng = _rng(seed, "facecom A", split)
        for gender, n in zip(("male", "female"), counts):
            for i in range(n):
                face = sample_identity(rng, gender=gender.title(), age=int(rng.integers(18, 70)))
                kind = _pick(rng, C.FACECOM_DISTORTIONS) if rng.uniform() < 0.4 else None
                path = root / "Task_A" / split / gender / f"{gender}_{split}_{i:04d}.jpg"
                images.append(_Image(path, face, ("A", split, gender, i), distortion=kind))
    person = 0
    for split, n in task_b.items():
        for _ in range(n):
            person += 1
            name = f"person_{person:03d}"
            face = sample_identity(_rng(seed, "facecom B", person))
            for j in range(1, n_clean + 1):
                folder = root / "Task_B" / split / name
                stem = f"{name}_{j:04d}"
                copies = {kind: folder / "distortion" / f"{stem}_{kind}.jpg"
                          for kind in C.FACECOM_DISTORTIONS}
                images.append(_Image(folder / f"{stem}.jpg", face, ("B", person, j), copies=copies))
    _write(images, seed, "facecom", size)
    return _finish(root, "facecom", seed)


def make_utkface(root: Path, seed: int = 0, n: int = 200, size: int = 64) -> Path:
    """UTKFace: ``UTKFace/<age>_<gender>_<race>_<date>.jpg.chip.jpg`` plus one irregular name (no race)."""
    root = _start(Path(root))
    rng = _rng(seed, "utkface")
    images, names = [], set()
    for i in range(n + 1):
        age = int(rng.integers(1, 6)) if rng.uniform() < 0.15 else int(np.clip(rng.normal(33, 15), 6, 99))
        gender, race = int(rng.integers(2)), int(rng.integers(5))
        face = sample_identity(rng, gender=C.FAIRFACE_GENDERS[gender], race=_pick(rng, UTKFACE_TO_RACE[race]),
                               age=age)
        date = f"201701{int(rng.integers(1, 29)):02d}{int(rng.integers(10**8, 10**9))}"
        labels = f"{age}_{gender}" if i == n else f"{age}_{gender}_{race}"
        name = f"{labels}_{date}.jpg.chip.jpg"
        if name not in names:
            names.add(name)
            images.append(_Image(root / "UTKFace" / name, face, (i,)))
    _write(images, seed, "utkface", size)
    return _finish(root, "utkface", seed)


WRITERS = {"hw2p2": make_hw2p2, "cs405": make_cs405, "fairface": make_fairface, "adience": make_adience,
           "celeba": make_celeba, "facecom": make_facecom, "utkface": make_utkface}
assert set(WRITERS) == set(C.DATASET_DIRS)


def make_all(root: Path, seed: int = 0) -> Path:
    """Write the twin of every dataset under ``root/<constants.DATASET_DIRS[name]>``; return ``root``."""
    root = Path(root)
    for name, writer in tqdm(WRITERS.items(), desc="demo twin", leave=False):
        writer(root / C.DATASET_DIRS[name], seed)
    return root


def ensure(name: str, root: Path | None = None, seed: int = 0) -> Path:
    """The folder of dataset ``name`` under ``root`` (default ``config.data_root()``), writing its demo twin
    first unless a complete twin (marker ``.demo_twin``) is already there. A half-written twin is rewritten;
    a folder holding anything else is never touched."""
    if name not in WRITERS:
        raise ValueError(f"No demo twin for {name!r}; known datasets: {sorted(WRITERS)}.")
    folder = Path(root or config.data_root()) / C.DATASET_DIRS[name]
    if (folder / MARKER).is_file():
        return folder
    if (folder / PARTIAL).is_file():
        shutil.rmtree(folder)
    elif folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} holds data that is not a demo twin; move it away or point "
                              f"FACES_DATA elsewhere to generate the synthetic twin of {name}.")
    start = time.perf_counter()
    WRITERS[name](folder, seed)
    print(f"demo twin: wrote synthetic {name} to {folder} in {time.perf_counter() - start:.1f} s")
    return folder
