"""The synthetic demo twin: procedurally drawn faces written in every real dataset layout.

``ensure(name)`` writes the twin of one dataset under ``config.data_root()`` (``data/demo/`` with
``FACES_PROFILE=demo``) so that every notebook runs end to end in seconds, offline. The faces come from
:mod:`helpers.face_render`; FACECOM's distorted images from :func:`helpers.distortions.distort`.
Everything is deterministic from the seed: the same seed writes the same bytes.
"""
from __future__ import annotations

import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ImageFilter
from tqdm.auto import tqdm

from helpers import config
from helpers.datasets import constants as C
from helpers.distortions import distort
from helpers.face_render import EXPRESSIONS, FaceParams, draw_face, fairface_age_bin, pick, sample_identity

MARKER = ".demo_twin"
PARTIAL = ".demo_twin.partial"
JPEG_QUALITY = 90

ADIENCE_AGE_SPANS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 90))
ADIENCE_IRREGULAR_AGES = ("35", "(38, 42)", "(8, 23)", "(27, 32)", "13", "(38, 48)")
UTKFACE_TO_RACE = {0: ("White",), 1: ("Black",), 2: ("East Asian", "Southeast Asian"), 3: ("Indian",),
                   4: ("Latino_Hispanic", "Middle Eastern", "Southeast Asian")}


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
    """Draw and save each image (and its distorted copies) from its own generator, keyed by ``item.key``."""
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
    """CMU 11-785 HW2P2: classification train/dev/test, verification known/unknown, and the pairs variant.

    Half of each unknown set are people outside ``known`` (label ``n000000``); the pairs use other people.
    """
    root = _start(Path(root))
    rng = _rng(seed, "hw2p2")
    n_unseen = n_unknown // 2
    names = _identity_names(rng, n_identities + 2 * n_unseen + n_pair_identities)
    faces = {name: sample_identity(_rng(seed, "hw2p2 identity", k)) for k, name in enumerate(names)}
    known, unseen = names[:n_identities], names[n_identities:n_identities + 2 * n_unseen]
    images = _hw2p2_classification(root / C.HW2P2_CLS, rng, faces, known, (n_train, n_dev, n_test))
    images += _hw2p2_verification(root / C.HW2P2_VER, rng, seed, faces, known, unseen, (n_known, n_unknown))
    images += _hw2p2_pairs(root / C.HW2P2_PAIRS, rng, faces, names[n_identities + 2 * n_unseen:], n_pairs)
    _write(images, seed, "hw2p2", size)
    return _finish(root, "hw2p2", seed)


def _hw2p2_classification(cls: Path, rng: np.random.Generator, faces: dict[str, FaceParams], known: list[str],
                          counts: tuple[int, int, int]) -> list[_Image]:
    """``train/<id>`` and ``dev/<id>`` images of ``known``, ``test/`` images and the sample submission."""
    n_train, n_dev, n_test = counts
    images = [_Image(cls / ("train" if j < n_train else "dev") / name / f"{j + 1:04d}_01.jpg", faces[name],
                     (name, j)) for name in known for j in range(n_train + n_dev)]
    test = [known[int(i)] for i in rng.integers(0, len(known), n_test)]
    images += [_Image(cls / "test" / f"{i:05d}.jpg", faces[name], ("test", i)) for i, name in enumerate(test)]
    _csv(cls / "classification_sample_submission.csv", ["id", "label"],
         [[f"{i:05d}.jpg", 0] for i in range(n_test)])
    return images


def _hw2p2_verification(ver: Path, rng: np.random.Generator, seed: int, faces: dict[str, FaceParams],
                        known: list[str], unseen: list[str], counts: tuple[int, int]) -> list[_Image]:
    """``known/<id>``, ``unknown_{dev,test}`` (known people and half of ``unseen`` each), the sample
    submission and ``verification_dev.csv`` (``image``, ``label``), its rows shuffled so that only the
    reader's join on ``image`` labels the files right."""
    n_known, n_unknown = counts
    images = [_Image(ver / "known" / name / f"{j + 1:04d}_01.jpg", faces[name], (name, "known", j))
              for name in known for j in range(n_known)]
    half, who = len(unseen) // 2, {}
    for split, new in (("unknown_dev", unseen[:half]), ("unknown_test", unseen[half:])):
        people = list(rng.choice(known, n_unknown - len(new), replace=False)) + new
        who[split] = [str(w) for w in rng.permutation(people)]
        images += [_Image(ver / split / f"{i:05d}.jpg", faces[w], (split, i)) for i, w in enumerate(who[split])]
    rows = [[f"{i:05d}.jpg", w if w in known else C.HW2P2_NO_MATCH] for i, w in enumerate(who["unknown_dev"])]
    order = _rng(seed, "hw2p2 verification_dev").permutation(len(rows))
    _csv(ver / "verification_dev.csv", ["image", "label"], [rows[i] for i in order])
    _csv(ver / "verification_sample_submission.csv", ["id", "label"],
         [[i, C.HW2P2_NO_MATCH] for i in range(n_unknown)])
    return images


def _hw2p2_pairs(pairs: Path, rng: np.random.Generator, faces: dict[str, FaceParams], pair_ids: list[str],
                 n_pairs: int, per_id: int = 4) -> list[_Image]:
    """``per_id`` images of each of ``pair_ids`` in one folder; val pairs from the first half of the people,
    test pairs (no ``match`` column) from the second."""
    order = rng.permutation(len(pair_ids) * per_id)
    owner = {f"{int(pos):05d}.jpg": pair_ids[k // per_id] for k, pos in enumerate(order)}
    half = set(pair_ids[:len(pair_ids) // 2])
    for name, first in (("val", True), ("test", False)):
        files = [f for f in sorted(owner) if (owner[f] in half) == first]
        lines = [f"{C.HW2P2_PAIRS}/{a} {C.HW2P2_PAIRS}/{b}" + (f" {m}" if first else "")
                 for a, b, m in _pairs(rng, files, owner, n_pairs)]
        _write_text(pairs / f"{name}_pairs.txt", lines)
    return [_Image(pairs / file, faces[w], ("pairs", file)) for file, w in sorted(owner.items())]


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
                expression = pick(rng, EXPRESSIONS, (0.5, 0.4, 0.1))
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
    """FACECOM: ``Task_A/<split>/{male,female}`` (male-heavy, some images distorted) and ``Task_B/<split>/
    <identity>`` with ``n_clean`` clean images plus ``distortion/<stem>_<kind>.jpg`` for each of the 7 kinds.

    ``task_a`` gives (male, female) counts per split, ``task_b`` identities per split; as in the real data,
    Task B's val people are not train's.
    """
    root = _start(Path(root))
    task_a = task_a or {"train": (120, 40), "val": (30, 10)}
    task_b = task_b or {"train": 12, "val": 6}
    images = [image for split, counts in task_a.items() for image in _facecom_a(root, seed, split, counts)]
    first = 1
    for split, n in task_b.items():
        images += _facecom_b(root / "Task_B" / split, seed, range(first, first + n), n_clean)
        first += n
    _write(images, seed, "facecom", size)
    return _finish(root, "facecom", seed)


def _facecom_a(root: Path, seed: int, split: str, counts: tuple[int, int]) -> list[_Image]:
    """Adults of each gender in ``Task_A/<split>/<gender>``, 40% of them under one distortion."""
    rng = _rng(seed, "facecom A", split)
    images = []
    for gender, n in zip(("male", "female"), counts, strict=True):
        for i in range(n):
            face = sample_identity(rng, gender=gender.title(), age=int(rng.integers(18, 70)))
            kind = pick(rng, C.FACECOM_DISTORTIONS) if rng.uniform() < 0.4 else None
            path = root / "Task_A" / split / gender / f"{gender}_{split}_{i:04d}.jpg"
            images.append(_Image(path, face, ("A", split, gender, i), distortion=kind))
    return images


def _facecom_b(folder: Path, seed: int, people: range, n_clean: int) -> list[_Image]:
    """``person_<k>/`` for each ``k`` in ``people``: clean images and their distorted copies."""
    images = []
    for person in people:
        name = f"person_{person:03d}"
        face = sample_identity(_rng(seed, "facecom B", person))
        for j in range(1, n_clean + 1):
            stem = f"{name}_{j:04d}"
            copies = {kind: folder / name / "distortion" / f"{stem}_{kind}.jpg" for kind in C.FACECOM_DISTORTIONS}
            images.append(_Image(folder / name / f"{stem}.jpg", face, ("B", person, j), copies=copies))
    return images


def make_utkface(root: Path, seed: int = 0, n: int = 200, size: int = 64) -> Path:
    """UTKFace: ``UTKFace/<age>_<gender>_<race>_<date>.jpg.chip.jpg`` plus one irregular name (no race)."""
    root = _start(Path(root))
    rng = _rng(seed, "utkface")
    images, names = [], set()
    for i in range(n + 1):
        age = int(rng.integers(1, 6)) if rng.uniform() < 0.15 else int(np.clip(rng.normal(33, 15), 6, 99))
        gender, race = int(rng.integers(2)), int(rng.integers(5))
        face = sample_identity(rng, gender=C.FAIRFACE_GENDERS[gender], race=pick(rng, UTKFACE_TO_RACE[race]),
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
