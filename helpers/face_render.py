"""The synthetic face model of the demo twin: identities (:class:`FaceParams`) and their drawings.

An identity is a stable set of face parameters in which gender, race and age visibly shape the face
(:func:`sample_identity`); each image of it (:func:`draw_face`) varies pose, light, background, expression
and noise. Everything is drawn from the ``numpy`` generator passed in, so a seed fixes every pixel.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from helpers.datasets import constants as C

RGB = tuple[int, int, int]
T = TypeVar("T")
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


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    """The colour ``t`` of the way from ``a`` to ``b``."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _shade(colour: Sequence[float], k: float) -> RGB:
    """``colour`` scaled by ``k`` (darker below 1), clipped to 0..255."""
    return tuple(int(np.clip(c * k, 0, 255)) for c in colour)


def pick(rng: np.random.Generator, options: Iterable[T], weights: Sequence[float] | None = None) -> T:
    """One of ``options`` (any iterable; a dict gives a key), drawn with optional ``weights``."""
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
    """A key of ``HAIR_STYLES[gender]`` (babies: buzz; baldness grows with a man's age)."""
    if age <= 2:
        return "buzz"
    styles = dict(HAIR_STYLES[gender])
    if gender == "Male":
        styles["bald"] *= 1 + 6 * np.clip((age - 35) / 35, 0, 1)
    return pick(rng, styles, list(styles.values()))


def _colouring(rng: np.random.Generator, gender: str, race: str, age: int) -> dict:
    """Skin, hair and lip colours: hair greys with age; some adult women wear lipstick."""
    u = rng.uniform
    hair_name = pick(rng, HAIR_COLOURS, HAIR_WEIGHTS[race in LIGHT_FEATURED])
    grey = float(np.clip((age - 38) / 32 + rng.normal(0, 0.12), 0, 1)) if age > 35 else 0.0
    hair = _mix(_shade(HAIR_COLOURS[hair_name], u(0.85, 1.15)), (196, 196, 200), grey)
    skin = _mix(*SKIN[race], u(0, 1))
    female = gender != "Male"
    lips = _mix(_shade(skin, 0.78), (170, 70, 70), 0.35 + 0.15 * female)
    if female and age >= 16 and u() < 0.55:
        lips = LIPSTICKS[int(rng.integers(len(LIPSTICKS)))]
    return {"skin": skin, "hair_name": hair_name, "hair_colour": hair, "grey": grey, "lip_colour": lips}


def _proportions(rng: np.random.Generator, gender: str, race: str, age: int) -> dict:
    """Head, eyes, nose and mouth: shapes and sizes set by gender, race and age (children: round, big-eyed)."""
    u, male, child = rng.uniform, gender == "Male", _childness(age)
    return {
        "head_ratio": u(0.72, 0.8) + 0.05 * male + 0.12 * child,
        "jaw": (u(0.45, 1.0) if male and age >= 16 else u(0.0, 0.35)) * (1 - child),
        "eye_size": u(0.17, 0.23) + 0.05 * child,
        "eye_spacing": u(0.19, 0.25),
        "eye_openness": u(*EYE_OPENNESS.get(race, DEFAULT_OPENNESS)) * (1 + 0.25 * child),
        "eye_line": u(0.44, 0.5) + 0.1 * child,
        "eye_colour": EYE_COLOURS[pick(rng, EYE_COLOURS, EYE_WEIGHTS[race in LIGHT_FEATURED])],
        "nose_length": u(0.17, 0.25) * (1 - 0.3 * child),
        "nose_width": (u(0.16, 0.23) + 0.05 * (race in ("Black", "Indian"))) * (1 - 0.25 * child),
        "mouth_width": u(0.3, 0.44) * (1 - 0.15 * child),
        "lip_thickness": u(0.6, 1.1) + 0.3 * (race == "Black"),
    }


def _hair_growth(rng: np.random.Generator, gender: str, age: int, style: str) -> dict:
    """Volume and hairline of the hair, eyebrows and facial hair (a receding hairline and beards on men)."""
    u, adult_male = rng.uniform, gender == "Male" and age >= 16
    return {
        "hair_volume": u(0.15, 0.25) if style == "curly" else u(0.03, 0.1),
        "hairline": u(0.1, 0.2) + (u(0.05, 0.15) if adult_male and age > 40 else 0) + 0.1 * _childness(age),
        "part": u(-0.5, 0.5),
        "brow_thickness": (u(0.035, 0.055) if adult_male else u(0.018, 0.032)),
        "brow_tilt": u(-1, 1),
        "beard": u(0.45, 1.0) if adult_male and u() < 0.7 else 0.0,
        "moustache": adult_male and u() < 0.2,
        "goatee": adult_male and u() < 0.12,
    }


def _extras(rng: np.random.Generator, gender: str, age: int, lips: RGB) -> dict:
    """Wrinkles, glasses, earrings, make-up and a mole."""
    u, male = rng.uniform, gender == "Male"
    return {
        "wrinkles": float(np.clip((age - 40) / 35, 0, 1)),
        "glasses": age > 8 and u() < 0.1 + 0.25 * (age > 55),
        "frame_colour": pick(rng, [(20, 20, 20), (90, 60, 30), (150, 150, 160), (120, 30, 40)]),
        "earrings": not male and u() < 0.4,
        "blush": u(0.2, 0.6) if not male else u(0, 0.15),
        "eye_shadow": pick(rng, EYE_SHADOWS) if lips in LIPSTICKS and u() < 0.7 else None,
        "mole": (u(-0.3, 0.3), u(0.0, 0.3)) if u() < 0.3 else None,
    }


def sample_identity(rng: np.random.Generator, gender: str | None = None, race: str | None = None,
                    age: int | None = None) -> FaceParams:
    """Draw one identity; ``gender``/``race``/``age`` (FairFace vocabularies, years) fix those traits.

    The parts are drawn from ``rng`` in the order written here: reordering them changes every identity.
    """
    gender = gender or pick(rng, C.FAIRFACE_GENDERS, (0.53, 0.47))
    race = race or pick(rng, C.FAIRFACE_RACES, (0.19, 0.14, 0.15, 0.14, 0.12, 0.14, 0.12))
    age = sample_age(rng) if age is None else int(age)
    colours = _colouring(rng, gender, race, age)
    style = _hair_style(rng, gender, age)
    return FaceParams(gender=gender, race=race, age=age, hair_style=style, **colours,
                      **_proportions(rng, gender, race, age), **_hair_growth(rng, gender, age, style),
                      **_extras(rng, gender, age, colours["lip_colour"]))


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
    expression = expression or pick(rng, EXPRESSIONS, (0.55, 0.35, 0.1))
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
