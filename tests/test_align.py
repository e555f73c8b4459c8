"""align: MTCNN works offline, finds real faces, and align_folder writes (and then skips) square crops."""

import socket
from pathlib import Path

import facenet_pytorch
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import align


def real_faces(realdata: Path) -> list[Path]:
    utk = sorted((realdata / "utkface_dev" / "images").glob("*.jpg"))[:3]
    att = [realdata / "att_faces" / "s1" / "1.pgm", realdata / "att_faces" / "s7" / "4.pgm"]
    return utk + att


def test_detector_weights_ship_with_the_package(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    align.detector.cache_clear()
    mtcnn = align.detector("cpu")
    data = Path(facenet_pytorch.__file__).parent / "data"
    for name in ("pnet", "rnet", "onet"):
        bundled = torch.load(data / f"{name}.pt", weights_only=True)
        loaded = getattr(mtcnn, name).state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in bundled.items())


def test_no_face_is_copied_resized_and_reported(tmp_path):
    src = tmp_path / "src" / "n000001"
    src.mkdir(parents=True)
    Image.new("RGB", (80, 60), (128, 128, 128)).save(src / "blank.jpg")
    Image.new("L", (50, 70), 200).save(src / "grey.pgm")
    summary = align.align_folder(sorted(src.iterdir()), tmp_path / "out", image_size=48)
    assert summary.aligned == 0 and sorted(p.name for p in summary.no_face) == ["blank.jpg", "grey.pgm"]
    assert [p.relative_to(tmp_path / "out").as_posix() for p in summary.out_paths] == [
        "blank.jpg",
        "grey.png",
    ]
    assert all(Image.open(p).size == (48, 48) for p in summary.out_paths)
    with pytest.raises(ValueError):
        align.align_folder([], tmp_path / "out")


def test_detect_finds_real_faces(realdata):
    paths = real_faces(realdata)
    boxes, probs, landmarks = align.detect(paths)
    for path, box, prob, points in zip(paths, boxes, probs, landmarks, strict=True):
        assert box is not None, f"no face found in {path}"
        assert prob[0] > 0.9 and points.shape[1:] == (5, 2)
        width, height = Image.open(path).size
        x1, y1, x2, y2 = box[0]
        assert x2 - x1 > width / 4 and y2 - y1 > height / 4, "the face fills a good part of these crops"
    box, prob, points = align.detect(paths[0])  # a single image gives the arrays directly
    assert box.shape == (1, 4)
    drawn = align.draw_detections(paths[0], box, points)
    original = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert drawn.size == Image.open(paths[0]).size and (np.asarray(drawn) != original).any()


def test_align_folder_writes_crops_then_skips(realdata, tmp_path):
    paths = real_faces(realdata)
    out = tmp_path / "aligned"
    summary = align.align_folder(paths, out, image_size=96, margin=10, batch_size=2, src_root=realdata)
    assert summary.aligned == len(paths) and not summary.no_face and summary.skipped == 0
    assert summary.out_paths[-1] == out / "att_faces" / "s7" / "4.png"
    assert summary.out_paths[0].parent == out / "utkface_dev" / "images"
    assert all(Image.open(p).size == (96, 96) for p in summary.out_paths)
    stamps = [p.stat().st_mtime_ns for p in summary.out_paths]
    again = align.align_folder(paths, out, image_size=96, margin=10, src_root=realdata)
    assert again.skipped == len(paths) and again.aligned == 0
    assert [p.stat().st_mtime_ns for p in again.out_paths] == stamps
