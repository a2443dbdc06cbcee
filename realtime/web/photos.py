"""Uploaded photos: bytes in, the annotated picture, a table of faces and the JSON record out.

Nothing is written to disk: Streamlit keeps an upload in memory while it is on the page, and the
results here are bytes handed to the page. Each refusal is one sentence naming the file.
"""

from __future__ import annotations

import io
import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import PurePath

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from model.errors import ExpressionDetectorError
from realtime.sinks import face_record
from realtime.types import Face, Frame
from realtime.web.service import WebService

MAX_UPLOAD_MB = 25  # enforced by Streamlit (server.maxUploadSize), said on the page
MAX_MEGAPIXELS = 120
# Larger photos are scaled to this longest side before reading: BlazeFace looks at 1920 pixels at most
# and a face crop needs 48, so nothing is lost, while a 10000x10000 picture would cost 300 MB a copy.
SHOWN_MAX_SIDE = 4096
FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
# The first bytes of each format the page reads: a file that starts so but has no readable header is cut short.
SIGNATURES = {"JPEG": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",), "WEBP": (b"RIFF",)}
JPEG_QUALITY = 90
# A photo near the pixel limit takes 300 MB while it is decoded; two at once bound what four visitors cost.
_decoding = threading.BoundedSemaphore(2)


class PhotoRefused(ExpressionDetectorError):
    """An upload the page cannot read; the message names the file and says why, in one sentence."""


class PhotoTooLarge(PhotoRefused):
    """A photo over the pixel limit: the HTTP API answers it with 413, as an upload over the size limit."""


class PhotoFormatRefused(PhotoRefused):
    """A readable image of a format other than JPEG, PNG or WebP: the HTTP API answers it with 415."""


@dataclass(frozen=True)
class PhotoResult:
    """One photo's answer: its faces, the annotated picture (JPEG) and the JSON record, ready for the page."""

    name: str
    faces: list[Face]
    classes: tuple[str, ...]
    annotated_jpeg: bytes
    record: dict
    original_size: tuple[int, int]
    shown_size: tuple[int, int]

    @property
    def summary(self) -> str:
        if not self.faces:
            return "No face found in this photo."
        if len(self.faces) == 1:
            return "1 face found."
        return f"{len(self.faces)} faces found, numbered from left to right."

    @property
    def scale_note(self) -> str | None:
        if self.original_size == self.shown_size:
            return None
        (width, height), (shown_w, shown_h) = self.original_size, self.shown_size
        return (f"This photo is {width}x{height} pixels; it was read and is shown at {shown_w}x{shown_h} "
                f"(face boxes in the JSON are in those pixels).")

    @property
    def stem(self) -> str:
        return PurePath(self.name).stem or "photo"

    def record_json(self) -> str:
        return json.dumps(self.record, indent=2) + "\n"


def face_rows(faces: list[Face], classes: list[str] | tuple[str, ...]) -> list[dict[str, str | int]]:
    """One row per face for the page's tables: number, label (marked when not sure), confidence and every class's
    probability, as percentages the way the desktop overlay writes them."""
    return [{"face": number, "label": f"{face.label}? (not sure)" if face.uncertain else face.label,
             "confidence": f"{face.confidence:.0%}", **{name: f"{face.probs[name]:.0%}" for name in classes}}
            for number, face in enumerate(faces, start=1)]


def decode_photo(name: str, data: bytes, reader: str = "the page") -> np.ndarray:
    """The upload as 8-bit BGR, upright as its EXIF orientation says (as ``main.py`` reads photos), or a refusal.

    Pillow reads only the header first (format and size), so a decompression bomb is refused before
    any pixel is decoded; OpenCV then decodes, as the desktop tool does. ``reader`` is who the refusals
    say reads the photo: the page, or the HTTP API's server (``serve.py``), which shares this reading.
    """
    if not data:
        raise PhotoRefused(f"{name} is empty (0 bytes)")
    kind, (width, height) = _header(name, data, reader)
    if width * height > MAX_MEGAPIXELS * 1_000_000:
        raise PhotoTooLarge(f"{name} is {width}x{height} pixels, more than the {MAX_MEGAPIXELS} megapixels {reader} "
                            f"reads; scale it down and upload it again")
    with _decoding:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise PhotoRefused(f"{name} is a damaged or cut-short {FORMATS[kind]} file (an interrupted download?) and "
                           f"cannot be read")
    return image


def _header(name: str, data: bytes, reader: str = "the page") -> tuple[str, tuple[int, int]]:
    """The image format and size from the file's header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                kind, size = header.format, header.size
    except Image.DecompressionBombError:
        raise PhotoTooLarge(f"{name} has more than the {MAX_MEGAPIXELS} megapixels {reader} reads; scale it down "
                            f"and upload it again") from None
    except (UnidentifiedImageError, OSError, ValueError):
        started_as = next((kind for kind, starts in SIGNATURES.items() if data.startswith(starts)
                           and (kind != "WEBP" or data[8:12] == b"WEBP")), None)
        if started_as is not None:
            raise PhotoRefused(f"{name} is a damaged or cut-short {FORMATS[started_as]} file (an interrupted "
                               f"download?) and cannot be read") from None
        raise PhotoRefused(f"{name} is not a JPEG, PNG or WebP image") from None
    if kind not in FORMATS:
        raise PhotoFormatRefused(f"{name} is a {kind} image; {reader} reads JPEG, PNG and WebP")
    return kind, size


def fit_for_page(image: np.ndarray) -> np.ndarray:
    """The photo scaled down to ``SHOWN_MAX_SIDE`` on its longest side where it is larger, else itself."""
    factor = SHOWN_MAX_SIDE / max(image.shape[:2])
    if factor >= 1.0:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def number_faces(annotated: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Each face's number, as the page's table numbers it, in a dark tag at the box's lower left corner (inside
    the box, so it covers neither the label above nor a neighbour)."""
    scale = max(0.5, min(annotated.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        text = str(number)
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        pad = max(2, text_h // 4)
        left = int(np.clip(x, 0, annotated.shape[1] - text_w - 2 * pad))
        bottom = int(np.clip(y + h, text_h + baseline + 2 * pad, annotated.shape[0]))
        cv2.rectangle(annotated, (left, bottom - text_h - baseline - 2 * pad), (left + text_w + 2 * pad, bottom),
                      (32, 32, 32), cv2.FILLED)
        cv2.putText(annotated, text, (left + pad, bottom - baseline - pad), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return annotated


def analyze_photo(service: WebService, name: str, data: bytes) -> PhotoResult:
    """Every face of one uploaded photo, found, read and drawn by the shared detector, as the page shows it."""
    image = decode_photo(name, data)
    original_size = (image.shape[1], image.shape[0])
    image = fit_for_page(image)
    with service.lock:
        faces = sorted(service.detector.detect(image), key=lambda face: (face.box[0], face.box[1]))
        annotated = number_faces(service.detector.annotate(image, faces), faces)
    jpeg = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
    record = face_record(Frame(image, 0, 0.0, PurePath(name).stem, source=name, is_still=True), faces)
    return PhotoResult(name, faces, tuple(service.classes), jpeg, record, original_size,
                       (image.shape[1], image.shape[0]))
