"""Drawing: a box and ``label NN%`` per face, coloured by class, plus an optional FPS and face-count line.

Sizes scale with the frame's shorter side, so labels stay readable from 320x240 to 1920x1080.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from realtime.types import Face

CLASS_COLOURS = {  # BGR
    "happy": (0, 200, 255),
    "sad": (255, 128, 0),
    "neutral": (170, 200, 60),
    "angry": (40, 40, 230),
    "fear": (180, 80, 200),
    "surprise": (80, 220, 80),
}
FALLBACK_COLOURS = [(0, 180, 180), (180, 0, 180), (120, 180, 0), (0, 90, 255)]
UNCERTAIN_COLOUR = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(name: str, classes: tuple[str, ...]) -> tuple[int, int, int]:
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    return FALLBACK_COLOURS[classes.index(name) % len(FALLBACK_COLOURS)]


@dataclass(frozen=True)
class Style:
    """Line and text sizes derived from the frame, computed once per frame size."""

    thickness: int
    font_scale: float
    padding: int

    @classmethod
    def for_frame(cls, width: int, height: int) -> "Style":
        unit = min(width, height) / 480.0
        return cls(max(1, round(2 * unit)), max(0.45, 0.7 * unit), max(2, round(4 * unit)))


class Annotator:
    """Draws faces; a face whose smoothed confidence is under the threshold is drawn in neutral gray."""

    def __init__(self, show_stats: bool = True, show_ids: bool = False) -> None:
        self.show_stats = show_stats
        self.show_ids = show_ids

    def draw(self, image: np.ndarray, faces: list[Face], fps: float | None) -> np.ndarray:
        """A copy of ``image`` with every face labelled (the source frame stays untouched)."""
        canvas = image.copy()
        style = Style.for_frame(canvas.shape[1], canvas.shape[0])
        for face in faces:
            self._draw_face(canvas, face, style)
        if self.show_stats:
            stats = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
            if fps is not None:
                stats = f"{fps:.0f} fps  " + stats
            self._draw_text(canvas, stats, (style.padding, style.padding), (255, 255, 255), (0, 0, 0), style)
        return canvas

    def _draw_face(self, canvas: np.ndarray, face: Face, style: Style) -> None:
        x, y, w, h = face.detection.box
        colour = UNCERTAIN_COLOUR if face.uncertain else class_colour(face.label, face.classes)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, style.thickness, cv2.LINE_AA)
        text = f"{face.label}{'?' if face.uncertain else ''} {face.confidence:.0%}"
        if self.show_ids and face.track_id is not None:
            text = f"#{face.track_id} {text}"
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.thickness)
        label_h = text_h + baseline + 2 * style.padding
        top = y - label_h if y - label_h >= 0 else y + h
        left = min(max(x, 0), max(canvas.shape[1] - text_w - 2 * style.padding, 0))
        self._draw_text(canvas, text, (left, top), (0, 0, 0), colour, style)

    @staticmethod
    def _draw_text(canvas, text, top_left, text_colour, background, style: Style) -> None:
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.thickness)
        x, y = top_left
        cv2.rectangle(canvas, (x, y), (x + text_w + 2 * style.padding, y + text_h + baseline + 2 * style.padding),
                      background, cv2.FILLED)
        cv2.putText(canvas, text, (x + style.padding, y + style.padding + text_h), FONT, style.font_scale,
                    text_colour, style.thickness, cv2.LINE_AA)
