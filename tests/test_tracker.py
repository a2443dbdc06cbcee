"""The tracker and smoother on hand-written box sequences: appearing, disappearing, crossing, missed frames."""

from __future__ import annotations

import math

import numpy as np
import pytest

from realtime.tracker import FaceTracker, TrackerSettings, box_iou
from realtime.types import Detection

CLASSES = ("happy", "sad")


def _det(x: float, y: float = 100, side: int = 80) -> Detection:
    return Detection((int(x), int(y), side, side), 0.9, None, None)


def _probs(*rows: float) -> np.ndarray:
    return np.array([[p, 1 - p] for p in rows])


def test_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_new_faces_get_new_ids_and_moving_faces_keep_theirs():
    tracker = FaceTracker(CLASSES)
    first = tracker.update([_det(0), _det(300)], _probs(0.9, 0.9), 0.0)
    assert [f.track_id for f in first] == [1, 2]
    for step in range(1, 20):
        faces = tracker.update([_det(300 - 4 * step), _det(8 * step)], _probs(0.9, 0.9), step / 30)
        assert [f.track_id for f in faces] == [2, 1]
    third = tracker.update([_det(150), _det(600, y=300)], _probs(0.9, 0.9), 20 / 30)
    assert third[1].track_id == 3


def test_a_missed_frame_keeps_the_id_and_a_long_absence_does_not():
    tracker = FaceTracker(CLASSES, TrackerSettings(max_gap_s=0.5))
    assert tracker.update([_det(100)], _probs(0.9), 0.0)[0].track_id == 1
    tracker.update([], _probs(), 1 / 30)
    assert tracker.update([_det(104)], _probs(0.9), 2 / 30)[0].track_id == 1
    tracker.update([], _probs(), 0.2)
    assert tracker.update([_det(104)], _probs(0.9), 1.0)[0].track_id == 2


def test_ids_are_never_reused_after_reset():
    tracker = FaceTracker(CLASSES)
    tracker.update([_det(0)], _probs(0.9), 0.0)
    tracker.reset()
    assert tracker.update([_det(0)], _probs(0.9), 0.0)[0].track_id == 2


def test_crossing_faces_keep_their_ids():
    tracker = FaceTracker(CLASSES)
    left_to_right = [(20 + 12 * s, 100 + 2 * s) for s in range(40)]
    right_to_left = [(500 - 12 * s, 120 - 2 * s) for s in range(40)]
    ids = None
    for step, ((ax, ay), (bx, by)) in enumerate(zip(left_to_right, right_to_left)):
        faces = tracker.update([_det(ax, ay), _det(bx, by)], _probs(0.9, 0.1), step / 30)
        current = [f.track_id for f in faces]
        ids = ids or current
        assert current == ids, f"ids swapped at step {step}"


def test_smoothing_has_the_same_time_constant_at_any_frame_rate():
    results = []
    for fps in (15, 60):
        tracker = FaceTracker(CLASSES, TrackerSettings(time_constant_s=0.3, switch_margin=0.0))
        tracker.update([_det(0)], _probs(0.0), 0.0)
        for index in range(1, round(0.4 * fps) + 1):
            face = tracker.update([_det(0)], _probs(1.0), index / fps)[0]
        results.append(face.probs[CLASSES[0]])
    assert results[0] == pytest.approx(1 - math.exp(-0.4 / 0.3), abs=1e-9)
    assert results[1] == pytest.approx(results[0], abs=1e-9)


def test_hysteresis_holds_the_label_until_another_class_leads_by_the_margin():
    tracker = FaceTracker(CLASSES, TrackerSettings(time_constant_s=0.0, switch_margin=0.2))
    assert tracker.update([_det(0)], _probs(0.7), 0.0)[0].label == "happy"
    for step, p in enumerate((0.45, 0.55, 0.42, 0.5), start=1):
        face = tracker.update([_det(0)], _probs(p), step / 30)[0]
        assert face.label == "happy", p
        assert face.raw_label == ("happy" if p >= 0.5 else "sad")
    assert tracker.update([_det(0)], _probs(0.35), 1.0)[0].label == "sad"


def test_low_smoothed_confidence_is_marked_uncertain():
    tracker = FaceTracker(CLASSES, TrackerSettings(min_confidence=0.6))
    assert tracker.update([_det(0)], _probs(0.55), 0.0)[0].uncertain
    assert not tracker.update([_det(300)], _probs(0.95), 0.0)[0].uncertain


def test_a_scene_cut_ends_every_track_and_small_changes_do_not():
    room = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 360, axis=0).repeat(3, axis=2)
    stage = room[:, ::-1].copy()  # another camera: bright where the room was dark
    tracker = FaceTracker(CLASSES)
    first = tracker.update([_det(100)], _probs(0.9), 0.0, room)[0]
    moved = np.clip(room.astype(int) + 12, 0, 255).astype(np.uint8)  # the light brightens a little
    same = tracker.update([_det(102)], _probs(0.9), 1 / 30, moved)[0]
    after_cut = tracker.update([_det(102)], _probs(0.1), 2 / 30, stage)[0]
    assert same.track_id == first.track_id
    assert after_cut.track_id != first.track_id
    assert after_cut.label == "sad" and after_cut.probs["sad"] == pytest.approx(0.9)


def test_the_clip_cut_to_the_audience_gives_its_faces_new_ids(media):
    from realtime.api import ExpressionDetector

    speaker_ids, audience_ids = set(), set()
    with ExpressionDetector() as detector:
        for result in detector.stream(media / "short_hamilton_clip.mp4", annotate=False):
            ids = {face.track_id for face in result.faces}
            (speaker_ids if result.index < 211 else audience_ids).update(ids)
    assert audience_ids and speaker_ids
    assert not speaker_ids & audience_ids
