"""Labels never hide each other or a face: close faces in a real frame of the shared clip, and crowded synthetic ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from realtime.annotator import Annotator
from realtime.api import ExpressionDetector
from realtime.types import Detection, Face


def _overlap(a, b) -> int:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


def _face(box: tuple[int, int, int, int], label: str = "neutral", confidence: float = 0.51) -> Face:
    probs = {"happy": 0.0, "sad": 0.0, "neutral": 0.0, "other": 0.0}
    probs[label] = confidence
    return Face(Detection(box, 0.9, None, None), probs, label, probs, uncertain=confidence < 0.6)


def _assert_apart(faces: list[Face], boxes: list[tuple[int, int, int, int]], size: tuple[int, int]) -> None:
    width, height = size
    for index, box in enumerate(boxes):
        assert 0 <= box[0] and box[0] + box[2] <= width and 0 <= box[1] and box[1] + box[3] <= height, box
        for other in boxes[index + 1:]:
            assert _overlap(box, other) == 0, (box, other)
        for face in faces:
            assert _overlap(box, face.box) == 0, (box, face.box)


def test_labels_of_faces_side_by_side_move_apart():
    faces = [_face((100, 100, 40, 40)), _face((145, 100, 40, 40)), _face((190, 100, 40, 40), "happy", 0.9)]
    boxes = Annotator().label_boxes(faces, (640, 360))
    _assert_apart(faces, boxes, (640, 360))


def test_a_label_at_the_frame_edge_stays_inside_and_off_the_face():
    faces = [_face((600, 2, 38, 40)), _face((0, 320, 40, 40))]
    _assert_apart(faces, Annotator().label_boxes(faces, (640, 360)), (640, 360))


def test_the_clips_last_frame_draws_every_label_whole(media: Path):
    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    frames = [image for ok, image in iter(capture.read, (False, None)) if ok] if capture.isOpened() else []
    capture.release()
    last = frames[-1]
    with ExpressionDetector() as detector:
        faces = detector.detect(last)
    assert len(faces) >= 2
    boxes = detector.annotator.label_boxes(faces, (last.shape[1], last.shape[0]))
    _assert_apart(faces, boxes, (last.shape[1], last.shape[0]))
