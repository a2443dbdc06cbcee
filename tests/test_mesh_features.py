"""scripts/mesh_features.py: the landmark features keep a face's shape only, and a wrong wheel is one sentence."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from scripts.mesh_features import OUTER_EYE_CORNERS, normalized_landmarks
from tests.conftest import run_cli


def _turned_moved_and_scaled(landmarks: np.ndarray, degrees: float, scale: float, shift: tuple) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = landmarks.copy()
    moved[:, :, :2] = scale * landmarks[:, :, :2] @ rotation.T + np.asarray(shift)
    moved[:, :, 2] = scale * landmarks[:, :, 2] + 7.0
    return moved


def test_landmark_features_ignore_where_how_large_and_how_rolled_the_face_sat():
    generator = np.random.default_rng(0)
    faces = generator.uniform(0, 192, size=(3, 468, 3))
    faces[:, OUTER_EYE_CORNERS[0], :2] = (60.0, 80.0)  # eyes level, left to right, as on an upright face
    faces[:, OUTER_EYE_CORNERS[1], :2] = (130.0, 80.0)
    features = normalized_landmarks(faces)
    for degrees, scale, shift in [(25.0, 0.5, (30.0, -12.0)), (-40.0, 1.7, (-5.0, 60.0))]:
        moved = normalized_landmarks(_turned_moved_and_scaled(faces, degrees, scale, shift))
        np.testing.assert_allclose(moved, features, atol=1e-9)
    other_face = faces.copy()
    other_face[:, 13, 1] += 15.0  # a lip point moved: a different expression must give different features
    assert np.abs(normalized_landmarks(other_face) - features).max() > 0.05


def test_a_wheel_without_the_mesh_is_refused_in_one_sentence(tmp_path: Path):
    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mediapipe/__init__.py", "")
    (tmp_path / "data" / "rafdb").mkdir(parents=True)  # the wheel is refused before any face is read
    result = run_cli("scripts/mesh_features.py", "--wheel", str(wheel), "--data", str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "face_landmark.tflite" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
