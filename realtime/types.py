"""The small plain types the pipeline stages pass to each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One picture from a source: its pixels (BGR), position in the stream and time in seconds.

    ``source_name`` is a short stem for file names (screenshots); ``source`` is what a record names:
    the photo's file name (also inside a folder), the video's, the stream's address or the camera.
    A photo's ``timestamp_s`` is only its place in the folder (``is_still``).
    """

    image: np.ndarray
    index: int
    timestamp_s: float
    source_name: str
    source: str = ""
    is_still: bool = False  # a photo: its timestamp_s orders photos but is no time, so records leave it out
    analysed: bool = True  # False: passed over by --sample-fps, shown with the last analysed frame's faces


@dataclass(frozen=True)
class Detection:
    """One face in frame pixels: box (x, y, w, h), detector score, the two eye centres, the nose tip and the
    mouth centre (BlazeFace's first four keypoints; None where the detector gave none)."""

    box: tuple[int, int, int, int]
    score: float
    right_eye: tuple[float, float] | None
    left_eye: tuple[float, float] | None
    nose: tuple[float, float] | None = None
    mouth: tuple[float, float] | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class Face:
    """A face as drawn: its box, the steady label with its probabilities by class, and this frame's raw ones.

    For a video ``probs`` are smoothed over time and ``label`` changes only past a margin; for a still
    image both are the classifier's own. ``track_id`` follows the face across frames (None for stills);
    ``uncertain`` marks a label whose confidence is below the model's threshold, drawn gray.
    """

    detection: Detection
    probs: dict[str, float]
    label: str
    raw_probs: dict[str, float]
    track_id: int | None = None
    uncertain: bool = False

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) in pixels of the frame."""
        return self.detection.box

    @property
    def score(self) -> float:
        """The face detector's confidence that this is a face."""
        return self.detection.score

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.probs)

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    @property
    def raw_label(self) -> str:
        return max(self.raw_probs, key=self.raw_probs.__getitem__)
