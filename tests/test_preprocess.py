"""The one preprocessing path: shapes, dtypes, ranges, alignment and border handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model.faces
import realtime.detector
import realtime.pipeline
import train
from model import preprocess
from model.preprocess import CropFraming, InputSpec, crop_aligned_face, face_to_input, faces_to_batch

SPEC = InputSpec()


@pytest.mark.parametrize(
    "image",
    [
        np.full((48, 48), 200, np.uint8),
        np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (30, 30, 4), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (64, 64), dtype=np.uint16),
        np.random.default_rng(3).random((10, 200, 1)).astype(np.float32),
        np.zeros((1, 1, 3), np.uint8),
    ],
    ids=["gray48", "bgr", "bgra", "gray16", "float", "1x1"],
)
def test_any_face_image_becomes_a_normalized_input(image):
    result = face_to_input(image, SPEC)
    assert result.shape == (48, 48, 1)
    assert result.dtype == np.float32
    assert 0.0 <= result.min() and result.max() <= 1.0


def test_pixel_values_follow_the_spec_normalization():
    image = np.full((48, 48), 255, np.uint8)
    assert np.allclose(face_to_input(image, SPEC), 1.0)
    shifted = InputSpec(scale=2.0 / 255.0, offset=-1.0)
    assert np.allclose(face_to_input(image, shifted), 1.0)
    assert np.allclose(face_to_input(np.zeros((48, 48), np.uint8), shifted), -1.0)


def test_batch_stacks_faces_in_order():
    faces = [np.full((60, 60, 3), value, np.uint8) for value in (0, 128, 255)]
    batch = faces_to_batch(faces, SPEC)
    assert batch.shape == (3, 48, 48, 1)
    assert np.allclose(batch.mean(axis=(1, 2, 3)), [0.0, 128 / 255, 1.0], atol=1e-3)


def test_training_and_live_paths_share_the_same_functions():
    assert train.face_to_input is preprocess.face_to_input
    # One function cuts a detected face out, for training's photos and for the live pipeline alike.
    assert realtime.pipeline.crop_face is preprocess.crop_face
    assert model.faces.crop_face is preprocess.crop_face and train.crop_face is preprocess.crop_face


def _frame_with_tilted_eyes(angle_degrees: float) -> tuple[np.ndarray, tuple, tuple]:
    frame = np.zeros((400, 400, 3), np.uint8)
    centre = np.array([200.0, 200.0])
    offset = 50 * np.array([np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))])
    eye_a, eye_b = tuple(centre - offset), tuple(centre + offset)
    for eye in (eye_a, eye_b):
        frame[int(eye[1]) - 4 : int(eye[1]) + 5, int(eye[0]) - 4 : int(eye[0]) + 5] = 255
    return frame, eye_a, eye_b


@pytest.mark.parametrize("angle", [-25.0, 0.0, 18.0])
def test_crop_levels_the_eyes(angle):
    frame, eye_a, eye_b = _frame_with_tilted_eyes(angle)
    crop = crop_aligned_face(frame, (100, 100, 200, 200), eye_a, eye_b, CropFraming(scale=1.0, shift_y=0.0))
    bright_rows, bright_cols = np.nonzero(crop[:, :, 0] > 128)
    left = bright_rows[bright_cols < crop.shape[1] // 2].mean()
    right = bright_rows[bright_cols >= crop.shape[1] // 2].mean()
    assert abs(left - right) <= 1.5
    assert abs(left - crop.shape[0] / 2) <= 2.0


def test_eye_order_does_not_matter():
    frame, eye_a, eye_b = _frame_with_tilted_eyes(12.0)
    first = crop_aligned_face(frame, (100, 100, 200, 200), eye_a, eye_b)
    second = crop_aligned_face(frame, (100, 100, 200, 200), eye_b, eye_a)
    assert np.array_equal(first, second)


def test_face_at_the_border_is_padded_not_skipped():
    frame = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    crop = crop_aligned_face(frame, (-40, 200, 100, 100), None, None)
    assert crop.shape[0] == crop.shape[1] > 0
    assert face_to_input(crop, SPEC).shape == (48, 48, 1)


def test_large_faces_are_cropped_at_bounded_size():
    frame = np.zeros((2000, 2000, 3), np.uint8)
    crop = crop_aligned_face(frame, (100, 100, 1500, 1500), None, None)
    assert crop.shape == (192, 192, 3)


def test_eyes_too_close_together_do_not_rotate_the_crop():
    """A turned face's eye keypoints crowd together and their line is not the head's roll: no levelling."""
    from model.preprocess import MIN_EYE_SPAN, eye_line_angle

    box_side = 100.0
    level = eye_line_angle((30.0, 40.0), (70.0, 40.0 + 40.0 * np.tan(np.radians(20))), box_side)
    assert np.isclose(np.degrees(level), 20.0, atol=0.01)
    span = (MIN_EYE_SPAN * box_side) * 0.8  # a three-quarter face: eyes close, their line steep
    turned = eye_line_angle((50.0, 40.0), (50.0 + span * np.cos(0.5), 40.0 + span * np.sin(0.5)), box_side)
    assert turned == 0.0
    assert eye_line_angle(None, (70.0, 40.0), box_side) == 0.0


@pytest.mark.parametrize("photo", ["obama.jpg", "biden.jpg"])
def test_the_detector_reports_eyes_nose_and_mouth_in_place(media, photo):
    """BlazeFace's keypoints come in a fixed order; a frontal face shows whether they were read in it."""
    from model.images import read_image
    from realtime.detector import largest_face

    with realtime.detector.FaceDetector(still_images=True) as detector:
        face = largest_face(detector.detect(read_image(media / photo)))
    x, y, w, h = face.box
    points = (face.right_eye, face.left_eye, face.nose, face.mouth)
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in points)
    eye_xs = sorted((face.right_eye[0], face.left_eye[0]))
    assert eye_xs[0] < face.nose[0] < eye_xs[1]
    assert max(face.right_eye[1], face.left_eye[1]) < face.nose[1] < face.mouth[1]
    # On a frontal face the inner-face centre is near the box centre (KDEF's straight faces spread over about
    # 0.1 box sides, scripts/kdef_keypoints.py; half profiles lie 0.25-0.35 off): both framings cut nearly alike.
    centre = preprocess.inner_face_centre(points, max(w, h), 0.0)
    assert np.hypot(centre[0] - (x + w / 2), centre[1] - (y + h / 2)) < 0.1 * max(w, h)


def _coordinate_frame(side: int = 400) -> np.ndarray:
    """A BGR frame whose blue channel is x / 2 and green channel y / 2: a crop's pixels say where they came from."""
    ys, xs = np.mgrid[0:side, 0:side]
    return np.dstack([xs // 2, ys // 2, np.zeros_like(xs)]).astype(np.uint8)


# A face turned to its right: the box runs back to the ear, the eyes, nose and mouth sit left of its centre.
TURNED_BOX = (100, 100, 100, 100)
TURNED_POINTS = {"eye_a": (110.0, 140.0), "eye_b": (140.0, 140.0), "nose": (105.0, 165.0), "mouth": (120.0, 180.0)}


def test_an_inner_face_crop_is_centred_on_the_eyes_nose_and_mouth():
    frame = _coordinate_frame()
    framing = CropFraming(scale=1.0, shift_y=0.0, centre="inner-face")
    eyes = (TURNED_POINTS["eye_a"], TURNED_POINTS["eye_b"])
    crop = crop_aligned_face(frame, TURNED_BOX, *eyes, framing, nose=TURNED_POINTS["nose"],
                             mouth=TURNED_POINTS["mouth"])
    boxed = crop_aligned_face(frame, TURNED_BOX, *eyes, CropFraming(scale=1.0, shift_y=0.0))
    mean_x, mean_y = np.mean(list(TURNED_POINTS.values()), axis=0)
    expected_y = mean_y + preprocess.INNER_FACE_ABOVE_BOX_CENTRE * 100
    assert abs(crop[50, 50, 0] * 2 - mean_x) <= 2 and abs(crop[50, 50, 1] * 2 - expected_y) <= 2
    assert abs(boxed[50, 50, 0] * 2 - 150) <= 2 and abs(boxed[50, 50, 1] * 2 - 150) <= 2


def test_an_inner_face_crop_without_all_four_keypoints_is_centred_on_the_box():
    frame = _coordinate_frame()
    eyes = (TURNED_POINTS["eye_a"], TURNED_POINTS["eye_b"])
    boxed = crop_aligned_face(frame, TURNED_BOX, *eyes, CropFraming())
    for nose, mouth in ((None, TURNED_POINTS["mouth"]), (TURNED_POINTS["nose"], None)):
        crop = crop_aligned_face(frame, TURNED_BOX, *eyes, CropFraming(centre="inner-face"), nose=nose, mouth=mouth)
        assert np.array_equal(crop, boxed)
    # The box framing ignores the nose and mouth.
    assert np.array_equal(boxed, crop_aligned_face(frame, TURNED_BOX, *eyes, CropFraming(),
                                                   nose=TURNED_POINTS["nose"], mouth=TURNED_POINTS["mouth"]))


def test_an_unknown_crop_centre_is_refused(tmp_path):
    from model.card import CardError, ModelCard

    with pytest.raises(ValueError, match="crop centre 'eyes' is not one of box, inner-face"):
        CropFraming(centre="eyes")
    card = ModelCard(classes=["happy", "sad"], input=InputSpec(), framing=CropFraming(centre="inner-face"))
    card.save(tmp_path / "m.json")
    assert ModelCard.load(tmp_path / "m.json").framing == CropFraming(centre="inner-face")
    raw = json.loads((tmp_path / "m.json").read_text())
    del raw["framing"]
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert ModelCard.load(tmp_path / "old.json").framing == CropFraming()  # cards from before the field
    raw["framing"] = {"centre": "eyes"}
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(CardError, match="crop centre 'eyes'"):
        ModelCard.load(tmp_path / "bad.json")
