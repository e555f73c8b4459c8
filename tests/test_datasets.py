"""Dataset readers on tiny hand-made trees of every layout, ImageFolder parity, splits and loaders."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from helpers import config
from helpers.datasets import (
    ColumnsError,
    FaceDataset,
    LayoutError,
    adience,
    celeba,
    class_folders,
    class_names,
    cs405,
    facecom,
    fairface,
    find_root,
    holdout_split,
    hw2p2,
    locate,
    make_loader,
    stratified_split,
    utkface,
)
from helpers.datasets.constants import (
    ADIENCE_AGES,
    ADIENCE_COLUMNS,
    CELEBA_ATTRIBUTES,
    FAIRFACE_COLUMNS,
    HW2P2_CLS,
    HW2P2_VER,
)
from helpers.imageio import list_images, scan


def img(path: Path, color=(90, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def assert_layout_message(err: pytest.ExceptionInfo, tree: str, *words: str):
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert tree in message and "00_data_setup.ipynb" in message and "FACES_PROFILE=demo" in message
    assert all(word in message for word in words)


# ---------------------------------------------------------------- folders, ImageFolder parity, find_root

def test_class_folders_matches_imagefolder(tmp_path):
    for name in ["n000010", "n000002", "n000100", "a", "a-b", "a b", "B"]:
        for k in range(2):
            img(tmp_path / name / f"{k}.jpg")
    img(tmp_path / "a" / "x" / "0.png")
    img(tmp_path / "a" / "Z.JPG")
    reference = ImageFolder(str(tmp_path))
    frame = class_folders(tmp_path)
    assert class_names(tmp_path) == reference.classes
    assert list(zip(frame["path"], frame["label"])) == reference.samples
    assert frame["identity"].tolist() == [reference.classes[label] for _, label in reference.samples]


def test_class_folders_ignores_hidden_files_and_folders(tmp_path):
    img(tmp_path / "n1" / "a.jpg")
    (tmp_path / "n1" / "._a.jpg").write_bytes(b"junk")
    (tmp_path / "n1" / ".DS_Store").write_bytes(b"junk")
    img(tmp_path / ".ipynb_checkpoints" / "b.jpg")
    frame = class_folders(tmp_path)
    assert frame["path"].tolist() == [str(tmp_path / "n1" / "a.jpg")] and class_names(tmp_path) == ["n1"]


def test_class_folders_with_fixed_vocabulary(tmp_path):
    img(tmp_path / "n3" / "a.jpg")
    assert class_folders(tmp_path, ["n1", "n3"])["label"].tolist() == [1]
    with pytest.raises(ValueError, match="n3"):
        class_folders(tmp_path, ["n1", "n2"])


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_find_root_tolerates_two_wrappers(tmp_path, depth):
    base = tmp_path.joinpath(*["wrap"] * depth)
    (base / "marker").mkdir(parents=True)
    assert find_root(tmp_path, "marker") == base.resolve()


def test_find_root_gives_up_below_two_wrappers(tmp_path):
    (tmp_path / "a" / "b" / "c" / "marker").mkdir(parents=True)
    with pytest.raises(LayoutError, match="up to 2 folders below"):
        find_root(tmp_path, "marker", tree="<root>/marker")


# ---------------------------------------------------------------- hw2p2

def make_hw2p2_classification(root: Path) -> Path:
    cls = root / HW2P2_CLS
    for identity in ["n000010", "n000002", "n000100"]:
        for k in range(2):
            img(cls / "train" / identity / f"{identity}_{k}.jpg")
        img(cls / "dev" / identity / "d.jpg")
    for name in ["b.jpg", "a.jpg", "c.jpg"]:
        img(cls / "test" / name)
    return cls


def test_hw2p2_classification_in_imagefolder_order(tmp_path):
    cls = make_hw2p2_classification(tmp_path / "hw2p2" / "unzipped")
    faces = hw2p2.read_classification(tmp_path / "hw2p2")
    train = ImageFolder(str(cls / "train"))
    assert faces.classes == train.classes == ["n000002", "n000010", "n000100"]
    assert list(zip(faces["train"]["path"], faces["train"]["label"])) == train.samples
    assert faces["dev"][["identity", "label"]].values.tolist() == [["n000002", 0], ["n000010", 1], ["n000100", 2]]
    assert faces["test"]["id"].tolist() == ["a.jpg", "b.jpg", "c.jpg"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in faces["test"]["path"])
    assert faces.root == cls.parent.resolve() and "splits={'train': 6, 'dev': 3, 'test': 3}" in repr(faces)


@pytest.mark.parametrize("missing_from", ["train", "dev"])
def test_hw2p2_identity_missing_from_one_split_is_an_error(tmp_path, missing_from):
    """A partial copy without one train/ identity folder would shift every later class index by one."""
    cls = make_hw2p2_classification(tmp_path)
    shutil.rmtree(cls / missing_from / "n000010")
    other = "dev" if missing_from == "train" else "train"
    img(cls / other / "n000001" / "x.jpg")
    with pytest.raises(LayoutError) as err:
        hw2p2.read_classification(tmp_path)
    message = str(err.value)
    assert f"2 of the 4 identity folders in {other}/ are missing from {missing_from}/" in message
    assert "n000001" in message and "n000010" in message and "re-download" in message and "kaggle_io" in message


def test_hw2p2_missing_folders_show_the_tree(tmp_path):
    with pytest.raises(LayoutError) as err:
        hw2p2.read_classification(tmp_path / "absent")
    assert_layout_message(err, hw2p2.CLS_TREE, "does not exist")
    (tmp_path / "x" / HW2P2_CLS / "train").mkdir(parents=True)
    with pytest.raises(LayoutError) as err:
        hw2p2.read_classification(tmp_path / "x")
    assert_layout_message(err, hw2p2.CLS_TREE, "Missing", "dev")


def make_hw2p2_verification(root: Path, csv_text: str = "label\nn000001\nn000000\nn000002\n") -> Path:
    ver = root / HW2P2_VER
    for identity in ["n000002", "n000001"]:
        img(ver / "known" / identity / "k.jpg")
    for name in ["c.jpg", "a.jpg", "b.jpg"]:
        img(ver / "unknown_dev" / name)
        img(ver / "unknown_test" / name)
    (ver / "verification_dev.csv").write_text(csv_text)
    return ver


def test_hw2p2_verification(tmp_path):
    make_hw2p2_verification(tmp_path)
    faces = hw2p2.read_verification(tmp_path)
    dev = faces["unknown_dev"]
    assert [Path(p).name for p in dev["path"]] == ["a.jpg", "b.jpg", "c.jpg"]
    assert dev["id"].tolist() == [0, 1, 2] and dev["identity"].tolist() == ["n000001", "n000000", "n000002"]
    assert faces["unknown_test"]["id"].tolist() == [0, 1, 2]
    assert faces["known"]["identity"].tolist() == ["n000001", "n000002"] and faces.classes == ["n000001", "n000002"]
    assert faces.files["verification_dev"].name == "verification_dev.csv"


def test_hw2p2_verification_label_only_csv_warns_once(tmp_path, caplog):
    make_hw2p2_verification(tmp_path)
    with caplog.at_level("WARNING"):
        hw2p2.read_verification(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert len(warnings) == 1 and "by position" in warnings[0] and "verification_dev.csv" in warnings[0]


@pytest.mark.parametrize("column, ids", [("image", ["c.jpg", "a.jpg", "b.jpg"]),
                                         ("File", ["unknown_dev/c.jpg", "unknown_dev/a.jpg", "unknown_dev/b.jpg"]),
                                         ("ID", ["2", "0", "1"])])
def test_hw2p2_verification_joins_on_the_image_column(tmp_path, caplog, column, ids):
    labels = ["n000002", "n000001", "n000000"]
    make_hw2p2_verification(tmp_path, "\n".join([f"label,{column}", *map(",".join, zip(labels, ids))]) + "\n")
    with caplog.at_level("WARNING"):
        dev = hw2p2.read_verification(tmp_path)["unknown_dev"]
    assert [Path(p).name for p in dev["path"]] == ["a.jpg", "b.jpg", "c.jpg"]
    assert dev["identity"].tolist() == ["n000001", "n000000", "n000002"] and not caplog.records


@pytest.mark.parametrize("rows, words", [
    (["a.jpg,n1", "b.jpg,n2"], "1 unknown_dev image(s) have no row"),
    (["a.jpg,n1", "b.jpg,n2", "c.jpg,n3", "zz.jpg,n4"], "1 row(s) name files not in"),
    (["a.jpg,n1", "a.jpg,n2", "c.jpg,n3"], "named more than once"),
    (["0,n1", "1,n2", "7,n3"], "1 row(s) name files not in"),
])
def test_hw2p2_verification_join_problems(tmp_path, rows, words):
    make_hw2p2_verification(tmp_path, "\n".join(["image,label", *rows]) + "\n")
    with pytest.raises(ValueError) as err:
        hw2p2.read_verification(tmp_path)
    assert "verification_dev.csv" in str(err.value) and words in str(err.value)


def test_hw2p2_verification_integer_ids_with_numbered_files_from_one_are_ambiguous(tmp_path):
    ver = make_hw2p2_verification(tmp_path, "id,label\n1,n1\n2,n2\n3,n3\n")
    for k, name in enumerate(["a.jpg", "b.jpg", "c.jpg"], start=1):
        (ver / "unknown_dev" / name).rename(ver / "unknown_dev" / f"{k:05d}.jpg")
    with pytest.raises(ValueError, match="numbered but not 0..2.*write file names"):
        hw2p2.read_verification(tmp_path)


def test_hw2p2_verification_refuses_unknown_extra_columns(tmp_path):
    make_hw2p2_verification(tmp_path, "label,picture\nn1,a.jpg\nn2,b.jpg\nn3,c.jpg\n")
    with pytest.raises(ValueError, match="no column naming the image.*'picture'"):
        hw2p2.read_verification(tmp_path)


def test_hw2p2_verification_csv_problems(tmp_path):
    make_hw2p2_verification(tmp_path / "a", "ID,identity\n0,n000001\n")
    with pytest.raises(ColumnsError) as err:
        hw2p2.read_verification(tmp_path / "a")
    message = str(err.value)
    assert "verification_dev.csv" in message and "['ID', 'identity']" in message and "['label']" in message
    make_hw2p2_verification(tmp_path / "b", "label\nn000001\n")
    with pytest.raises(ValueError, match="1 rows but .* 3 images"):
        hw2p2.read_verification(tmp_path / "b")


def make_pairs(root: Path, val: str, test: str) -> Path:
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        img(root / "ver_data" / name)
    (root / "ver_data" / "val_pairs.txt").write_text(val)
    (root / "ver_data" / "test_pairs.txt").write_text(test)
    return root


def test_hw2p2_pairs(tmp_path):
    make_pairs(tmp_path / "wrap", "ver_data/a.jpg ver_data/b.jpg 1\nver_data/a.jpg ver_data/c.jpg 0\n",
               "ver_data/b.jpg ver_data/c.jpg\n\n")
    faces = hw2p2.read_pairs(tmp_path)
    base = (tmp_path / "wrap").resolve()
    assert faces["val"].values.tolist() == [[str(base / "ver_data/a.jpg"), str(base / "ver_data/b.jpg"), 1],
                                            [str(base / "ver_data/a.jpg"), str(base / "ver_data/c.jpg"), 0]]
    assert faces["val"]["match"].dtype == np.int64
    assert faces["test"].columns.tolist() == ["path1", "path2"] and len(faces["test"]) == 1


def test_hw2p2_pairs_problems(tmp_path):
    make_pairs(tmp_path / "a", "ver_data/a.jpg ver_data/b.jpg\n", "")
    with pytest.raises(ValueError, match="val_pairs.txt, line 1: expected 3 fields"):
        hw2p2.read_pairs(tmp_path / "a")
    make_pairs(tmp_path / "b", "ver_data/a.jpg ver_data/zz.jpg 1\n", "")
    with pytest.raises(LayoutError, match="zz.jpg"):
        hw2p2.read_pairs(tmp_path / "b")


# ---------------------------------------------------------------- cs405

def make_cs405(root: Path, sample: str = "image_name,label\nt1.jpg,n000001\n") -> Path:
    for identity in ["n008171", "n000001"]:
        img(root / "dataset" / "train" / identity / "0.jpg")
    img(root / "dataset" / "test" / "t2.jpg")
    img(root / "dataset" / "test" / "t1.jpg")
    (root / "sample_submission.csv").write_text(sample)
    return root


def test_cs405(tmp_path):
    root = make_cs405(tmp_path / "cs405" / "face-classification-deep-learning-cs-405")
    faces = cs405.read(tmp_path / "cs405")
    assert faces.classes == ImageFolder(str(root / "dataset" / "train")).classes == ["n000001", "n008171"]
    assert faces["train"][["identity", "label"]].values.tolist() == [["n000001", 0], ["n008171", 1]]
    assert faces["test"]["id"].tolist() == ["t1.jpg", "t2.jpg"]
    assert faces.files["sample_submission"] == root.resolve() / "sample_submission.csv"


def test_cs405_sample_submission_columns(tmp_path):
    make_cs405(tmp_path, "id,label\nt1.jpg,n000001\n")
    with pytest.raises(ColumnsError, match=r"Found columns: \['id', 'label'\]; expected columns: \['image_name'"):
        cs405.read(tmp_path)


# ---------------------------------------------------------------- fairface

FAIRFACE_ROWS = {"train": ["train/1.jpg,20-29,Male,East Asian,True", "train/2.jpg,more than 70,Female,White,False"],
                 "val": ["val/1.jpg,3-9,Female,Middle Eastern,False"]}


def make_fairface(root: Path, rows: dict = FAIRFACE_ROWS, header: str = ",".join(FAIRFACE_COLUMNS)) -> Path:
    for split, lines in rows.items():
        (root / f"fairface_label_{split}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"fairface_label_{split}.csv").write_text("\n".join([header, *lines]) + "\n")
        for line in lines:
            img(root / "fairface-img-margin025-trainval" / line.split(",")[0])
    return root


def test_fairface(tmp_path):
    root = make_fairface(tmp_path / "fairface")
    faces = fairface.read(root)
    train = faces["train"]
    assert train.columns.tolist() == ["path", *FAIRFACE_COLUMNS, "age_idx", "gender_idx", "race_idx"]
    assert train[["age_idx", "gender_idx", "race_idx"]].values.tolist() == [[3, 0, 3], [8, 1, 0]]
    assert faces["val"]["race_idx"].tolist() == [6]
    assert all(Path(p).is_file() for split in ("train", "val") for p in faces[split]["path"])
    assert train["service_test"].tolist() == [True, False]


def test_fairface_unknown_value_and_missing_column(tmp_path):
    bad = {"train": ["train/1.jpg,20-29,Male,Martian,True"], "val": FAIRFACE_ROWS["val"]}
    make_fairface(tmp_path / "a", bad)
    with pytest.raises(ValueError, match=r"fairface_label_train.csv: column 'race' has value\(s\) \['Martian'\]"):
        fairface.read(tmp_path / "a")
    make_fairface(tmp_path / "b", header="file,age,gender,service_test",
                  rows={"train": ["train/1.jpg,20-29,Male,True"], "val": []})
    with pytest.raises(ColumnsError) as err:
        fairface.read(tmp_path / "b")
    assert "Found columns: ['file', 'age', 'gender', 'service_test']" in str(err.value)
    assert str(FAIRFACE_COLUMNS) in str(err.value)


# ---------------------------------------------------------------- adience

def write_fold(root: Path, fold: int, rows: list[tuple[str, str, str, str, str]], images: bool = True):
    """rows: (user_id, original_image, face_id, age, gender); images are written unless told otherwise."""
    lines = ["\t".join(ADIENCE_COLUMNS)]
    for user, original, face, age, gender in rows:
        lines.append(f"{user}\t{original}\t{face}\t{age}\t{gender}\t0\t0\t10\t10\t0\t0\t50")
        if images:
            img(root / "faces" / user / f"coarse_tilt_aligned_face.{face}.{original}")
    (root / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n")


def make_adience(root: Path) -> Path:
    root.mkdir(parents=True)
    write_fold(root, 0, [("u1@N01", "p1.jpg", "1", "(25, 32)", "f"), ("u1@N01", "p2.jpg", "2", "(0, 2)", "m"),
                         ("u2@N02", "p3.jpg", "3", "None", "f"), ("u2@N02", "p4.jpg", "4", "(38, 42)", "m"),
                         ("u2@N02", "p5.jpg", "5", "35", "f"), ("u3@N03", "p6.jpg", "6", "(8, 12)", "u"),
                         ("u3@N03", "p7.jpg", "7", "(8, 12)", "")])
    write_fold(root, 1, [("u4@N04", "p8.jpg", "8", "(60, 100)", "m")], images=False)
    for fold in range(2, 5):
        write_fold(root, fold, [(f"u{fold}x", "q.jpg", str(fold), "(48, 53)", "f")])
    return root


def test_adience_keeps_regular_rows_and_counts_drops(tmp_path):
    faces = adience.read(make_adience(tmp_path / "adience"))
    assert faces.dropped == {"age None": 1, "age irregular": 2, "gender u/empty": 2, "image missing": 1}
    fold0 = faces["fold_0"]
    assert fold0.columns.tolist() == ["path", "user_id", "face_id", "age", "age_idx", "gender", "gender_idx", "fold"]
    assert fold0[["face_id", "age", "gender", "gender_idx", "fold"]].values.tolist() == [
        [1, "(25, 32)", "f", 1, 0], [2, "(0, 2)", "m", 0, 0]]
    assert fold0["age_idx"].tolist() == [ADIENCE_AGES.index("(25, 32)"), 0]
    assert len(faces["fold_1"]) == 0 and faces["fold_4"]["fold"].tolist() == [4]
    assert all(Path(p).is_file() for p in fold0["path"])


def test_adience_missing_fold_file(tmp_path):
    root = make_adience(tmp_path / "adience")
    (root / "fold_3_data.txt").unlink()
    with pytest.raises(LayoutError) as err:
        adience.read(root)
    assert_layout_message(err, adience.TREE, "fold_3_data.txt")


# ---------------------------------------------------------------- celeba

IMAGES = ["000001.jpg", "000002.jpg", "000003.jpg"]


def attr_values(k: int) -> list[int]:
    return [1 if (i + k) % 3 == 0 else -1 for i in range(len(CELEBA_ATTRIBUTES))]


def make_celeba_torchvision(root: Path) -> Path:
    for name in IMAGES:
        img(root / "img_align_celeba" / name)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in attr_values(k)) for k, name in enumerate(IMAGES)]
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(IMAGES)), " ".join(CELEBA_ATTRIBUTES), *rows]))
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    (root / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 7\n000003.jpg 9\n")
    return root


def make_celeba_kaggle(root: Path) -> Path:
    for name in IMAGES:
        img(root / "img_align_celeba" / "img_align_celeba" / name)
    rows = [",".join([name, *map(str, attr_values(k))]) for k, name in enumerate(IMAGES)]
    (root / "list_attr_celeba.csv").write_text("\n".join([",".join(["image_id", *CELEBA_ATTRIBUTES]), *rows]))
    (root / "list_eval_partition.csv").write_text("image_id,partition\n000001.jpg,0\n000002.jpg,0\n000003.jpg,2\n")
    return root


def test_celeba_torchvision_layout(tmp_path):
    faces = celeba.read(make_celeba_torchvision(tmp_path / "celeba"))
    assert {name: len(frame) for name, frame in faces.splits.items()} == {"train": 1, "valid": 1, "test": 1}
    train = faces["train"]
    assert train.columns.tolist() == ["path", "image_id", "identity", *CELEBA_ATTRIBUTES]
    assert train[CELEBA_ATTRIBUTES].iloc[0].tolist() == [(v + 1) // 2 for v in attr_values(0)]
    assert faces["test"]["identity"].tolist() == [9] and Path(train["path"].iloc[0]).is_file()


def test_celeba_kaggle_layout_in_a_wrapper(tmp_path):
    make_celeba_kaggle(tmp_path / "celeba" / "archive")
    faces = celeba.read(tmp_path / "celeba")
    assert [len(faces[s]) for s in ("train", "valid", "test")] == [2, 0, 1]
    assert "identity" not in faces["train"] and faces["test"]["Male"].tolist() == [(attr_values(2)[CELEBA_ATTRIBUTES.index("Male")] + 1) // 2]
    assert all(Path(p).is_file() for p in faces["train"]["path"])


def test_celeba_problems(tmp_path):
    root = make_celeba_torchvision(tmp_path / "a")
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(LayoutError) as err:
        celeba.read(root)
    assert_layout_message(err, celeba.TREE, "list_eval_partition.txt")
    root = make_celeba_kaggle(tmp_path / "b")
    text = (root / "list_attr_celeba.csv").read_text().replace("Smiling", "Smile")
    (root / "list_attr_celeba.csv").write_text(text)
    with pytest.raises(ColumnsError, match=r"missing column\(s\) \['Smiling'\]"):
        celeba.read(root)


# ---------------------------------------------------------------- facecom

def test_facecom_task_a(tmp_path):
    for split in ("train", "val"):
        for gender in ("male", "female"):
            img(tmp_path / "Comys_Hackathon5" / "Task_A" / split / gender / f"{gender}.jpg")
    faces = facecom.read_task_a(tmp_path)
    assert faces.classes == ["female", "male"]
    assert faces["val"][["gender", "label"]].values.tolist() == [["female", 0], ["male", 1]]


def test_facecom_distortion_names_are_those_of_the_transforms():
    from helpers.datasets.constants import FACECOM_DISTORTIONS
    from helpers.distortions import DISTORTIONS
    assert tuple(FACECOM_DISTORTIONS) == DISTORTIONS


def test_facecom_task_b_labels_each_split_by_its_own_people(tmp_path, caplog):
    base = tmp_path / "Task_B"
    for split, person, kind in [("train", "002_frontal", "foggy"), ("train", "003_frontal", "blurred"),
                                ("val", "001_frontal", "sunny"), ("val", "004_frontal", None)]:
        img(base / split / person / f"{person}.jpg")
        if kind:
            img(base / split / person / "distortion" / f"{person}_{kind}.jpg")
    with caplog.at_level("WARNING"):
        faces = facecom.read_task_b(tmp_path)
    assert not caplog.records
    assert faces.classes == ["002_frontal", "003_frontal"]
    assert faces["train"][["identity", "label", "distortion"]].values.tolist() == [
        ["002_frontal", 0, "clean"], ["002_frontal", 0, "foggy"], ["003_frontal", 1, "clean"],
        ["003_frontal", 1, "blurred"]]
    assert faces["val"][["identity", "label", "distortion"]].values.tolist() == [
        ["001_frontal", 0, "clean"], ["001_frontal", 0, "sunny"], ["004_frontal", 1, "clean"]]


def test_facecom_task_b_person_in_both_splits_is_an_error(tmp_path):
    for split, people in [("train", ["001_frontal", "002_frontal"]), ("val", ["002_frontal", "003_frontal"])]:
        for person in people:
            img(tmp_path / "Task_B" / split / person / f"{person}.jpg")
    with pytest.raises(ValueError, match=r"1 identity is in both train and val: \['002_frontal'\]") as err:
        facecom.read_task_b(tmp_path)
    assert "001_frontal" not in str(err.value) and "003_frontal" not in str(err.value)


def test_facecom_task_b_unknown_suffix_is_kept_with_a_warning(tmp_path, caplog):
    img(tmp_path / "Task_B" / "train" / "ann" / "ann.jpg")
    img(tmp_path / "Task_B" / "train" / "ann" / "distortion" / "ann_fog.jpg")
    img(tmp_path / "Task_B" / "val" / "bob" / "bob.jpg")
    with caplog.at_level("WARNING"):
        faces = facecom.read_task_b(tmp_path)
    assert faces["train"]["distortion"].tolist() == ["clean", "fog"]
    assert len(caplog.records) == 1 and "['fog']" in caplog.records[0].getMessage()


def test_facecom_missing_split(tmp_path):
    img(tmp_path / "Task_A" / "train" / "male" / "m.jpg")
    with pytest.raises(LayoutError) as err:
        facecom.read_task_a(tmp_path)
    assert_layout_message(err, facecom.TREE_A, "val")


# ---------------------------------------------------------------- utkface

def test_utkface_parses_names_and_counts_irregular_ones(tmp_path):
    for k, name in enumerate(["25_1_2_20170116174525125.jpg.chip.jpg", "sub/3_0_4_20161219140623097.jpg",
                              "39_1_20170116174525125.jpg.chip.jpg", "53__0_20170116184028385.jpg"]):
        img(tmp_path / name, (k * 40, 0, 0))
    (tmp_path / "._25_1_2_2017.jpg").write_bytes(b"junk")
    faces = utkface.read(tmp_path)
    assert faces.dropped == {"irregular name": 2}
    assert faces["all"].drop(columns="path").values.tolist() == [[25, 1, 2, "female", "Asian"],
                                                                 [3, 0, 4, "male", "Others"]]


UTK_NAMES = ["25_1_2_20170116174525125.jpg.chip.jpg", "3_0_4_20161219140623097.jpg.chip.jpg",
             "40_0_1_20170117134213422.jpg.chip.jpg"]


@pytest.mark.parametrize("wrapper", ["", "utkface_aligned_cropped"])
def test_utkface_reads_each_face_once_from_the_utkface_folder(tmp_path, wrapper):
    """The Kaggle archive repeats its faces under crop_part1/ and utkface_aligned_cropped/."""
    copies = {f"{wrapper}/UTKFace": UTK_NAMES, f"{wrapper}/crop_part1": UTK_NAMES[:2],
              "utkface_aligned_cropped/UTKFace": UTK_NAMES, ".partial-utkface-x/UTKFace": UTK_NAMES}
    for folder, names in copies.items():
        for k, name in enumerate(names):
            img(tmp_path / folder.lstrip("/") / name, (k * 50, 0, 0))
    faces = utkface.read(tmp_path)
    read = faces["all"]["path"].map(lambda p: Path(p).relative_to(tmp_path).as_posix()).tolist()
    assert read == [f"{wrapper}/UTKFace/{name}".lstrip("/") for name in UTK_NAMES]
    ignored = 2 if wrapper else 2 + len(UTK_NAMES)
    assert faces.dropped == {"irregular name": 0, "outside UTKFace/": ignored}


def test_utkface_drops_byte_identical_copies(tmp_path):
    for k, name in enumerate(UTK_NAMES):
        img(tmp_path / "UTKFace" / name, (k * 50, 0, 0))
    img(tmp_path / "UTKFace" / "24_1_2_20170116174525125.jpg.chip.jpg", (0, 0, 0))  # same bytes, other name
    img(tmp_path / "UTKFace" / "x" / "99_1_2_20170116174525125.jpg.chip.jpg", (50, 0, 0))
    faces = utkface.read(tmp_path)
    assert faces.dropped == {"irregular name": 0, "duplicate content": 2}
    assert sorted(Path(p).name for p in faces["all"]["path"]) == [
        "24_1_2_20170116174525125.jpg.chip.jpg", *sorted(UTK_NAMES[1:])]  # first in sorted path order kept


def test_utkface_missing_folder(tmp_path):
    with pytest.raises(LayoutError) as err:
        utkface.read(tmp_path / "absent")
    assert_layout_message(err, utkface.TREE, "does not exist")


# ---------------------------------------------------------------- locate

def test_locate(tmp_path, monkeypatch):
    (tmp_path / "fairface").mkdir()
    assert locate("fairface", tmp_path) == tmp_path / "fairface"
    monkeypatch.setenv("FACES_DATA", str(tmp_path))
    assert locate("fairface") == config.data_root() / "fairface"
    with pytest.raises(LayoutError) as err:
        locate("adience", tmp_path)
    assert_layout_message(err, adience.TREE, str(tmp_path / "adience"))
    with pytest.raises(KeyError, match="known"):
        locate("imagenet", tmp_path)


# ---------------------------------------------------------------- splits and loaders

def strata_frame(n: int = 1003) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"gender": rng.choice(["m", "f"], n, p=[.7, .3]), "race": rng.choice(list("abc"), n),
                         "value": np.arange(n)}, index=np.arange(n) * 2)


def test_stratified_split_proportions_and_reproducibility():
    df, fractions = strata_frame(), {"train": .7, "val": .15, "test": .15}
    parts = stratified_split(df, fractions, by=["gender", "race"], seed=3)
    assert sorted(np.concatenate([p.index for p in parts.values()]).tolist()) == df.index.tolist()
    for (gender, race), group in df.groupby(["gender", "race"]):
        for name, share in fractions.items():
            part = parts[name]
            count = ((part["gender"] == gender) & (part["race"] == race)).sum()
            assert np.floor(len(group) * share) <= count <= np.ceil(len(group) * share)
    assert all(part.index.is_monotonic_increasing for part in parts.values())
    again = stratified_split(df, fractions, by=["gender", "race"], seed=3)
    assert all(parts[k].equals(again[k]) for k in fractions)
    other = stratified_split(df, fractions, by=["gender", "race"], seed=4)
    assert not parts["val"].equals(other["val"])
    plain = stratified_split(df, {"a": .5, "b": .5}, by=None)
    assert sorted(map(len, plain.values())) == [501, 502]


def test_stratified_split_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(strata_frame(), {"train": .7, "val": .2})
    with pytest.raises(ColumnsError, match="age"):
        stratified_split(strata_frame(), {"train": .5, "val": .5}, by="age")


def test_holdout_split():
    df = strata_frame()
    rest, holdout = holdout_split(df, 0.2, by="gender", seed=0)
    assert len(holdout) == 201 and len(rest) == 802 and set(rest.index).isdisjoint(holdout.index)
    assert holdout["gender"].eq("m").mean() == pytest.approx(df["gender"].eq("m").mean(), abs=0.01)
    assert holdout.equals(holdout_split(df, 0.2, by="gender", seed=0)[1])
    assert not holdout.equals(holdout_split(df, 0.2, by="gender", seed=1)[1])


def test_make_loader_is_seeded_and_uses_the_profile(tmp_path):
    paths = [str(img(tmp_path / f"{k}.png", (k * 20, 0, 0))) for k in range(8)]
    dataset = FaceDataset(pd.DataFrame({"path": paths, "label": range(8)}),
                          transform=lambda im: torch.tensor(im.getpixel((0, 0))))
    order = [torch.cat([y for _, y in make_loader(dataset, 4, shuffle=True, seed=s)]).tolist() for s in (0, 0, 1)]
    assert order[0] == order[1] != order[2] and sorted(order[0]) == list(range(8))
    loader = make_loader(dataset, 4, shuffle=False)
    assert loader.num_workers == config.profile().num_workers and loader.pin_memory == torch.cuda.is_available()
    images, labels = next(iter(loader))
    assert images[:, 0].tolist() == [0, 20, 40, 60] and labels.tolist() == [0, 1, 2, 3]
    assert make_loader(dataset, 4, shuffle=False, num_workers=1).persistent_workers


# ---------------------------------------------------------------- real faces

@pytest.mark.realdata
def test_real_faces(realdata):
    att = realdata / "att_faces"
    report = scan(att, progress=False)
    assert report.n_ok == 400 and report.n_bad == 0 and report.modes == {"L": 400}
    frame = class_folders(att)
    assert frame["identity"].nunique() == 40 and frame["label"].max() == 39
    assert list(zip(frame["path"], frame["label"])) == ImageFolder(str(att)).samples
    image, _ = FaceDataset(frame.iloc[:2])[0]
    assert image.mode == "RGB" and image.size == (92, 112)
    images = realdata / "utkface_dev" / "images"
    faces = utkface.read(images)
    assert len(faces["all"]) >= 0.95 * len(list_images(images))
    labels = pd.read_csv(realdata / "utkface_dev" / "labels.csv").set_index("file")
    parsed = faces["all"].assign(file=[Path(p).name for p in faces["all"]["path"]]).set_index("file")
    common = parsed.index.intersection(labels.index)
    assert len(common) >= 0.95 * len(parsed)
    agree = (parsed.loc[common, ["age", "gender_idx", "race_idx"]].values == labels.loc[common].values).all(axis=1)
    assert agree.mean() > 0.99
