"""The one path from a face image to the network's input, shared by training and the live pipeline.

Training reads FER2013 crops (tight, upright, eyebrows to chin) and feeds them through
``faces_to_batch``; the live pipeline first cuts such a crop out of a camera frame with
``crop_aligned_face`` and then calls the very same ``faces_to_batch``. Keeping both in this module
is what makes a live face look, to the network, like the faces it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: a square of ``size`` pixels, ``channels`` deep, x * scale + offset.

    ``equalize``: each face's histogram is equalized before normalizing. The shared FER2013 crops are
    all equalized (a flat histogram each); a face cut from a camera frame is not, and dim light or a
    washed-out picture moves its histogram far from anything in training. Equalizing every face, in
    training (after augmentation) and at run time alike, puts them all on the same footing. Models
    whose card predates the field keep the old behaviour (no equalization).
    """

    size: int = 48
    channels: int = 1
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    equalize: bool = False


@dataclass(frozen=True)
class CropFraming:
    """How a detector box becomes a crop framed like the training faces.

    ``scale`` multiplies the box's longer side; ``shift_y`` moves the crop centre down by that
    fraction of the crop side (negative: up). The defaults are measured, not guessed:
    ``scripts/detect_set.py`` pastes every val crop into a larger frame, lets the live detector find
    it, and compares the detector's box with the crop's known square. The median crop is 1.2 box
    sides wide and centred 0.085 crop sides above the box centre (MediaPipe's box stops near the
    eyebrows; FER2013 crops keep some forehead). ``train.py evaluate --detect`` on those frames
    confirms it against other framings (README, "Crop framing").
    """

    scale: float = 1.2
    shift_y: float = -0.085
    # What the crop is centred on before ``shift_y``: "box", the detector box's centre; "inner-face", the mean of
    # the eyes, nose tip and mouth centre, moved down to where the box centre lies on a straight face
    # (INNER_FACE_ABOVE_BOX_CENTRE), so a frontal face is framed as by "box" and a turned one keeps its eyes,
    # nose and mouth where a frontal face has them. A face without all four keypoints is centred on its box.
    centre: str = "box"

    def __post_init__(self) -> None:
        if self.centre not in CROP_CENTRES:
            raise ValueError(f"crop centre {self.centre!r} is not one of {', '.join(CROP_CENTRES)}")


CROP_CENTRES = ("box", "inner-face")
# How far the mean of the eyes, nose tip and mouth centre lies above the box centre on a straight face, in box
# sides: the median over KDEF's straight train photos through the live detector (scripts/kdef_keypoints.py,
# 5th-95th percentile 0.003-0.107). On half profiles the same mean lies 0.25-0.35 box sides to the side of
# the box centre, towards the way the face looks: the box runs from the near eye back to the ear.
INNER_FACE_ABOVE_BOX_CENTRE = 0.057


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any OpenCV image (gray, BGR, BGRA; 8 or 16 bit; float in [0, 1]) as one 8-bit gray plane."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing) and bilinear when enlarging."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    shrinking = height > size or width > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def equalize_face(pixels: np.ndarray) -> np.ndarray:
    """A flat histogram for one 8-bit face (gray, or BGR through its luma), as the FER2013 crops have."""
    if pixels.ndim == 2:
        return cv2.equalizeHist(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return cv2.equalizeHist(pixels[:, :, 0])[:, :, None]
    luma_chroma = cv2.cvtColor(pixels, cv2.COLOR_BGR2YCrCb)
    luma_chroma[:, :, 0] = cv2.equalizeHist(luma_chroma[:, :, 0])
    return cv2.cvtColor(luma_chroma, cv2.COLOR_YCrCb2BGR)


def _normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """8-bit (size, size, channels) pixels to the network's float input, equalized first if the spec says so."""
    if spec.equalize:
        pixels = equalize_face(pixels)
    return pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)


def face_to_input(face: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One face crop of any size and colour as a normalized (size, size, channels) float32 array."""
    if face.size == 0:
        raise ValueError("empty face crop")
    if spec.channels == 1:
        pixels = _resize_square(to_gray_uint8(face), spec.size)[:, :, None]
    elif spec.channels == 3:
        gray_or_colour = face if face.ndim == 3 and face.shape[2] == 3 else cv2.cvtColor(
            to_gray_uint8(face), cv2.COLOR_GRAY2BGR)
        pixels = _resize_square(gray_or_colour, spec.size)
    else:
        raise ValueError(f"unsupported channel count {spec.channels}")
    return _normalize(pixels, spec)


def renormalize_batch(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Augmented training faces (float, pixels in [0, 1]) through the same final step as ``face_to_input``.

    Training augments after loading (darkening, blur, noise...), so the equalization a live face gets
    after such damage has to be applied again here, by the very same function, or the network would
    learn from faces the live pipeline never shows it.
    """
    pixels = np.clip(np.rint(batch * 255.0), 0, 255).astype(np.uint8)
    return np.stack([_normalize(face, spec) for face in pixels]) if len(pixels) else batch.astype(np.float32)


def faces_to_batch(faces: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Face crops as one (N, size, size, channels) float32 batch, ready for a single model call."""
    batch = np.empty((len(faces), spec.size, spec.size, spec.channels), dtype=np.float32)
    for index, face in enumerate(faces):
        batch[index] = face_to_input(face, spec)
    return batch


# Eyes closer together than this share of the detector box's side belong to a face turned far from the camera,
# and the line between them is not the head's roll. Measured on KDEF's train photos through the live detector
# (scripts/kdef_keypoints.py): the span is 0.39-0.45 of the box on straight faces and 0.28-0.37 on half profiles
# (5th-95th percentile), where the line is within 7 degrees of level for 90% of these upright heads; on full
# profiles it is 0.01-0.15 and the line is 24-29 degrees off at the median, up to 90.
MIN_EYE_SPAN = 0.25


def eye_line_angle(eye_a: tuple[float, float] | None, eye_b: tuple[float, float] | None, box_side: float) -> float:
    """The head's roll in radians from the two eye keypoints (either order), or 0 where they cannot tell it:
    an eye missing, or the eyes too close together for their line to be the head's (a turned face)."""
    if eye_a is None or eye_b is None:
        return 0.0
    dx, dy = eye_b[0] - eye_a[0], eye_b[1] - eye_a[1]
    if np.hypot(dx, dy) < MIN_EYE_SPAN * box_side:
        return 0.0
    if dx < 0:
        dx, dy = -dx, -dy
    return float(np.arctan2(dy, dx))


def inner_face_centre(points: Sequence[tuple[float, float] | None], box_side: float, angle: float,
                      ) -> tuple[float, float] | None:
    """Where a straight face's box centre would be for these eyes, nose tip and mouth centre (None: one missing).

    The mean of the four points, moved INNER_FACE_ABOVE_BOX_CENTRE box sides down the face (``angle`` is
    the head's roll, as ``eye_line_angle`` gives it)."""
    if len(points) != 4 or any(point is None for point in points):
        return None
    mean_x, mean_y = np.mean(np.asarray(points, dtype=np.float64), axis=0)
    down = INNER_FACE_ABOVE_BOX_CENTRE * box_side
    return float(mean_x - np.sin(angle) * down), float(mean_y + np.cos(angle) * down)


def crop_aligned_face(
    frame: np.ndarray,
    box: tuple[float, float, float, float],
    eye_a: tuple[float, float] | None,
    eye_b: tuple[float, float] | None,
    framing: CropFraming = CropFraming(),
    max_side: int = 192,
    nose: tuple[float, float] | None = None,
    mouth: tuple[float, float] | None = None,
) -> np.ndarray:
    """Cut a face out of a frame, eyes levelled and framed like a training crop.

    ``box`` is (x, y, w, h) in pixels; the eyes are pixel points as the detector reports them, in
    either order (either may be None, then the face is not rotated). The crop is rotated about the box centre so
    that the line between the eyes is horizontal, because a tilted head otherwise reads as another
    expression; a face turned too far for its eyes to tell its roll is not rotated (``eye_line_angle``). Parts outside the frame are filled by replicating the border, so faces cut by the
    frame edge are padded rather than skipped. The result is at most ``max_side`` pixels square: the
    network needs 48, and warping straight from a large frame to 48 would alias. ``nose`` and ``mouth`` are
    used only where ``framing.centre`` is "inner-face" (``CropFraming``).
    """
    x, y, w, h = box
    side = max(max(w, h) * framing.scale, 1.0)
    angle = eye_line_angle(eye_a, eye_b, max(w, h))
    centre = (x + w / 2.0, y + h / 2.0)
    if framing.centre == "inner-face":
        centre = inner_face_centre((eye_a, eye_b, nose, mouth), max(w, h), angle) or centre
    centre_x = centre[0] - np.sin(angle) * framing.shift_y * side
    centre_y = centre[1] + np.cos(angle) * framing.shift_y * side
    out_side = int(min(max_side, max(round(side), 1)))
    zoom = out_side / side
    cos_a, sin_a = np.cos(angle) * zoom, np.sin(angle) * zoom
    half = out_side / 2.0
    # Maps frame coordinates to crop coordinates: rotate by -angle about the crop centre, scale, recentre.
    matrix = np.array(
        [
            [cos_a, sin_a, half - cos_a * centre_x - sin_a * centre_y],
            [-sin_a, cos_a, half + sin_a * centre_x - cos_a * centre_y],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        frame, matrix, (out_side, out_side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


class DetectedFace(Protocol):
    """What cutting a face out needs of a detection (``realtime.types.Detection`` has it): its box and keypoints."""

    box: tuple[int, int, int, int]
    right_eye: tuple[float, float] | None
    left_eye: tuple[float, float] | None
    nose: tuple[float, float] | None
    mouth: tuple[float, float] | None


def crop_face(frame: np.ndarray, face: DetectedFace, framing: CropFraming) -> np.ndarray:
    """A detected face cut out of ``frame`` as ``framing`` says (the model's card's): the one call training's photo
    faces (``model.faces``) and the live pipeline both make."""
    return crop_aligned_face(frame, face.box, face.right_eye, face.left_eye, framing, nose=face.nose, mouth=face.mouth)
