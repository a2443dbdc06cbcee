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
    "other": (200, 140, 150),  # another expression than the model draws: a muted slate, apart from the not-sure gray
}
FALLBACK_COLOURS = [(0, 180, 180), (180, 0, 180), (120, 180, 0), (0, 90, 255)]
UNCERTAIN_COLOUR = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x, y, w, h


def class_colour(name: str, classes: tuple[str, ...]) -> tuple[int, int, int]:
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    return FALLBACK_COLOURS[classes.index(name) % len(FALLBACK_COLOURS)]


def _intersection(a: Rect, b: Rect) -> int:
    """Overlapping area of two (x, y, w, h) rectangles, in pixels."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


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
        """A copy of ``image`` with every face labelled (the source frame stays untouched); with ``show_stats``
        also the face count, and the frame rate where ``fps`` is given (streams, not stills)."""
        canvas = image.copy()
        style = Style.for_frame(canvas.shape[1], canvas.shape[0])
        labels = self._labels(faces, style, canvas.shape[1], canvas.shape[0])
        for face, (text, box) in zip(faces, labels):
            colour = UNCERTAIN_COLOUR if face.uncertain else class_colour(face.label, face.classes)
            x, y, w, h = face.box
            cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, style.thickness, cv2.LINE_AA)
            self._draw_text(canvas, text, box[:2], (0, 0, 0), colour, style)
        if self.show_stats:
            self._draw_stats(canvas, faces, fps, style, [box for _, box in labels])
        return canvas

    def draw_stats(self, canvas: np.ndarray, faces: list[Face], fps: float | None) -> None:
        """The ``NN fps  K faces`` line alone, in place: the window draws it onto its own copy of a frame."""
        style = Style.for_frame(canvas.shape[1], canvas.shape[0])
        labels = self._labels(faces, style, canvas.shape[1], canvas.shape[0])
        self._draw_stats(canvas, faces, fps, style, [box for _, box in labels])

    def label_boxes(self, faces: list[Face], frame_size: tuple[int, int]) -> list[Rect]:
        """Where each face's label is drawn on a frame of ``frame_size`` (width, height)."""
        style = Style.for_frame(*frame_size)
        return [box for _, box in self._labels(faces, style, *frame_size)]

    def _draw_stats(self, canvas: np.ndarray, faces: list[Face], fps: float | None, style: Style,
                    label_boxes: list[Rect]) -> None:
        """In the first corner where it hides no face and no label (top left, top right, bottom left, bottom
        right), else where it covers least."""
        text = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
        if fps is not None:
            text = f"{fps:.0f} fps  " + text
        width, height = _text_box_size(text, style)
        right, bottom = canvas.shape[1] - width - style.padding, canvas.shape[0] - height - style.padding
        taken = [face.box for face in faces] + label_boxes
        corner, least = (style.padding, style.padding), None
        for x, y in ((style.padding, style.padding), (right, style.padding), (style.padding, bottom), (right, bottom)):
            covered = sum(_intersection((x, y, width, height), box) for box in taken)
            if least is None or covered < least:
                corner, least = (x, y), covered
            if covered == 0:
                break
        self._draw_text(canvas, text, corner, (255, 255, 255), (0, 0, 0), style)

    def _text(self, face: Face) -> str:
        text = f"{face.label}{'?' if face.uncertain else ''} {face.confidence:.0%}"
        return f"#{face.track_id} {text}" if self.show_ids and face.track_id is not None else text

    def _labels(self, faces: list[Face], style: Style, frame_w: int, frame_h: int) -> list[tuple[str, Rect]]:
        """Each face's label text and box, inside the frame, placed so that it hides no other label and no face.

        Faces are placed largest first; each label takes the first free spot (``_label_spots``: above its
        box, below it, then further out); where none is free (a crowd), the spot that covers least. A label may touch a face's box, never cover it.
        """
        texts = [self._text(face) for face in faces]
        taken = [face.box for face in faces]  # the faces, then each label as it is placed
        placed: dict[int, Rect] = {}
        for index in sorted(range(len(faces)), key=lambda i: -faces[i].detection.area):
            label_w, label_h = _text_box_size(texts[index], style)
            spots = np.array(_label_spots(faces[index].box, label_w, label_h), dtype=np.int64)
            spots[:, 0] = np.clip(spots[:, 0], 0, max(frame_w - label_w, 0))
            spots[:, 1] = np.clip(spots[:, 1], 0, max(frame_h - label_h, 0))
            covered = _covered(spots, label_w, label_h, np.array(taken, dtype=np.int64))
            # The first free spot in order of preference, else (argmin takes the first) the least covered.
            x, y = spots[int(np.argmin(covered))]
            placed[index] = (int(x), int(y), label_w, label_h)
            taken.append(placed[index])
        return [(texts[i], placed[i]) for i in range(len(faces))]

    @staticmethod
    def _draw_text(canvas, text, top_left, text_colour, background, style: Style) -> None:
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.thickness)
        x, y = top_left
        cv2.rectangle(canvas, (x, y), (x + text_w + 2 * style.padding, y + text_h + baseline + 2 * style.padding),
                      background, cv2.FILLED)
        cv2.putText(canvas, text, (x + style.padding, y + style.padding + text_h), FONT, style.font_scale,
                    text_colour, style.thickness, cv2.LINE_AA)


def _covered(spots: np.ndarray, width: int, height: int, taken: np.ndarray) -> np.ndarray:
    """For each (x, y) of ``spots``, the area a width x height label there shares with the ``taken`` rectangles:
    one array operation, so a crowd of faces costs no Python loop over every pair."""
    overlap_w = (np.minimum(spots[:, None, 0] + width, taken[None, :, 0] + taken[None, :, 2])
                 - np.maximum(spots[:, None, 0], taken[None, :, 0])).clip(min=0)
    overlap_h = (np.minimum(spots[:, None, 1] + height, taken[None, :, 1] + taken[None, :, 3])
                 - np.maximum(spots[:, None, 1], taken[None, :, 1])).clip(min=0)
    return (overlap_w * overlap_h).sum(axis=1)


def _label_spots(box: Rect, label_w: int, label_h: int) -> list[tuple[int, int]]:
    """Top-left corners to try for a face's label: rows above and below the box, each left-aligned, right-aligned,
    centred, then beside the box; nearest the face first."""
    x, y, w, h = box
    lefts = [x, x + w - label_w, x + (w - label_w) // 2, x - label_w, x + w]
    spots = []
    for step in range(4):
        for top in (y - label_h * (step + 1), y + h + label_h * step):
            spots += [(left, top) for left in lefts]
    return spots


def _text_box_size(text: str, style: Style) -> tuple[int, int]:
    """Width and height of a text with its padded background, as ``_draw_text`` fills it."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.thickness)
    return text_w + 2 * style.padding, text_h + baseline + 2 * style.padding
