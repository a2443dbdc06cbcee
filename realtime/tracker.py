"""The tracker stage: an id per face across frames, probabilities smoothed over time, labels with hysteresis.

Per-frame predictions flicker, and with several people a label would jump between faces. Each
detection is matched to the track it overlaps most (box IoU), or failing that to the nearest track
centre (a fast head turn can leave no overlap between frames); a track survives a short gap without
detections and ids are never reused. Probabilities are smoothed exponentially with a time constant
in seconds, so the behaviour is the same at 15 and at 60 fps; the drawn label changes only when
another class leads the current one by a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from realtime.types import Detection, Face


@dataclass(frozen=True)
class TrackerSettings:
    time_constant_s: float = 0.3
    switch_margin: float = 0.2
    min_confidence: float = 0.6
    max_gap_s: float = 0.5
    min_iou: float = 0.2
    max_centre_distance: float = 0.75  # in box sides


@dataclass
class _Track:
    track_id: int
    detection: Detection
    smoothed: np.ndarray
    label_index: int
    last_seen_s: float


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    intersection = overlap_w * overlap_h
    union = aw * ah + bw * bh - intersection
    return intersection / union if union > 0 else 0.0


def _centre_distance(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Distance between box centres in units of their mean side."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    distance = math.hypot(ax + aw / 2 - bx - bw / 2, ay + ah / 2 - by - bh / 2)
    return distance / max((aw + ah + bw + bh) / 4, 1.0)


@dataclass
class SceneCuts:
    """Notices a hard cut: the whole picture changing at once between two frames.

    A cut from a speaker to the audience must not hand the speaker's id and smoothed history to
    whoever happens to sit where he stood. The measure is the mean absolute change of a 32x18
    thumbnail, as a share of the full range: on the clip, its three camera cuts change it by
    0.10-0.12 and everything else (head turns, gestures, camera moves) by at most 0.05.
    """

    threshold: float = 0.08
    _previous: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        # Bilinear to 128x72 first (it samples pixels, so it is cheap), then area-averaged: cheaper than one area
        # resize of the full frame, and the thumbnail still averages over the whole picture.
        coarse = cv2.resize(image, (128, 72), interpolation=cv2.INTER_LINEAR)
        thumbnail = cv2.resize(coarse, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._previous = self._previous, thumbnail
        return previous is not None and previous.shape == thumbnail.shape and \
            float(np.abs(thumbnail - previous).mean()) / 255.0 > self.threshold


def untracked_faces(detections: list[Detection], probs: np.ndarray, classes: tuple[str, ...],
                    min_confidence: float) -> list[Face]:
    """Faces of a still image: each labelled by its own probabilities, with no id and no history."""
    faces = []
    for detection, raw in zip(detections, probs):
        by_class = dict(zip(classes, map(float, raw)))
        label = classes[int(np.argmax(raw))]
        faces.append(Face(detection, by_class, label, by_class, None, by_class[label] < min_confidence))
    return faces


@dataclass
class FaceTracker:
    classes: tuple[str, ...]
    settings: TrackerSettings = field(default_factory=TrackerSettings)
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1
    _scene_cuts: SceneCuts = field(default_factory=SceneCuts)

    def reset(self) -> None:
        """Forget every track (between unrelated still images); ids still never repeat."""
        self._tracks = []

    def _match(self, detections: list[Detection]) -> dict[int, _Track]:
        """Detection index -> existing track, greedily by overlap, then by centre distance."""
        pairs = [(box_iou(d.box, t.detection.box), i, t) for i, d in enumerate(detections) for t in self._tracks]
        matches: dict[int, _Track] = {}
        used: set[int] = set()
        for iou, index, track in sorted(pairs, key=lambda p: -p[0]):
            if iou >= self.settings.min_iou and index not in matches and track.track_id not in used:
                matches[index] = track
                used.add(track.track_id)
        near = [(_centre_distance(d.box, t.detection.box), i, t) for i, d in enumerate(detections)
                for t in self._tracks if i not in matches and t.track_id not in used]
        for distance, index, track in sorted(near, key=lambda p: p[0]):
            if distance <= self.settings.max_centre_distance and index not in matches and track.track_id not in used:
                matches[index] = track
                used.add(track.track_id)
        return matches

    def _new_track(self, detection: Detection, probs: np.ndarray, now_s: float) -> _Track:
        track = _Track(self._next_id, detection, probs.astype(np.float64), int(np.argmax(probs)), now_s)
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _smooth(self, track: _Track, detection: Detection, probs: np.ndarray, now_s: float) -> None:
        elapsed = max(now_s - track.last_seen_s, 0.0)
        weight = 1.0 - math.exp(-elapsed / self.settings.time_constant_s) if self.settings.time_constant_s > 0 else 1.0
        track.smoothed = track.smoothed + weight * (probs - track.smoothed)
        leader = int(np.argmax(track.smoothed))
        if track.smoothed[leader] - track.smoothed[track.label_index] >= self.settings.switch_margin:
            track.label_index = leader
        track.detection, track.last_seen_s = detection, now_s

    def update(self, detections: list[Detection], probs: np.ndarray, now_s: float,
               image: np.ndarray | None = None) -> list[Face]:
        """Faces of this frame, in detection order, with ids, smoothed probabilities and steady labels.

        Given the frame's ``image``, a scene cut ends every track first.
        """
        if image is not None and self._scene_cuts.is_cut(image):
            self.reset()
        self._tracks = [t for t in self._tracks if now_s - t.last_seen_s <= self.settings.max_gap_s]
        matches = self._match(detections)
        faces = []
        for index, (detection, raw) in enumerate(zip(detections, probs)):
            track = matches.get(index)
            if track is None:
                track = self._new_track(detection, raw, now_s)
            else:
                self._smooth(track, detection, raw, now_s)
            confidence = float(track.smoothed[track.label_index])
            faces.append(Face(
                detection=detection,
                probs=dict(zip(self.classes, map(float, track.smoothed))),
                label=self.classes[track.label_index],
                raw_probs=dict(zip(self.classes, map(float, raw))),
                track_id=track.track_id,
                uncertain=confidence < self.settings.min_confidence,
            ))
        return faces
