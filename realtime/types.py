"""The small plain types the pipeline stages pass to each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One picture from a source: its pixels (BGR), position in the stream and time in seconds."""

    image: np.ndarray
    index: int
    timestamp_s: float
    source_name: str


@dataclass(frozen=True)
class Detection:
    """One face in frame pixels: box (x, y, w, h), detector score, and the two eye centres."""

    box: tuple[int, int, int, int]
    score: float
    right_eye: tuple[float, float] | None
    left_eye: tuple[float, float] | None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class Face:
    """A detected face as drawn: smoothed probabilities (card class order), the steady label, and the raw ones.

    ``track_id`` follows the face across frames; ``uncertain`` marks a label whose smoothed confidence
    is below the threshold, drawn in a neutral colour.
    """

    detection: Detection
    probs: tuple[float, ...]
    classes: tuple[str, ...]
    label: str
    raw_probs: tuple[float, ...]
    track_id: int | None = None
    uncertain: bool = False

    @property
    def confidence(self) -> float:
        return self.probs[self.classes.index(self.label)]

    @property
    def raw_label(self) -> str:
        return self.classes[int(np.argmax(self.raw_probs))]
