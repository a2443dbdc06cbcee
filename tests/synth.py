"""Small synthesized videos for the tracking and smoothing tests, built from real faces in ../shared, and the
odd image files the upload tests (page and HTTP API) refuse."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FPS = 30.0


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def face_cutout(photo: Path, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """A square around a face box (1.6 box sides), resized to ``side`` pixels."""
    image = cv2.imread(str(photo))
    x, y, w, h = box
    size = int(max(w, h) * 1.6)
    left, top = int(x + w / 2 - size / 2), int(y + h / 2 - size / 2)
    padded = cv2.copyMakeBorder(image, size, size, size, size, cv2.BORDER_REPLICATE)
    return cv2.resize(padded[top + size : top + 2 * size, left + size : left + 2 * size], (side, side))


def alternating_faces(crops: list[np.ndarray], seconds_each: float, size=(640, 480), scale: int = 4) -> list[np.ndarray]:
    """Each crop upscaled and centred on a gray background for ``seconds_each``, one after the other."""
    width, height = size
    frames = []
    for crop in crops:
        face = cv2.resize(crop, (crop.shape[1] * scale, crop.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        if face.ndim == 2:
            face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
        frame = np.full((height, width, 3), 110, np.uint8)
        top, left = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
        frame[top : top + face.shape[0], left : left + face.shape[1]] = face
        frames.extend([frame] * int(round(seconds_each * FPS)))
    return frames


def crossing_faces(first: np.ndarray, second: np.ndarray, steps: int = 90, size=(640, 360)) -> tuple[list, list]:
    """Two faces sliding past each other; returns the frames and each frame's true face centres (first, second)."""
    width, height = size
    side = first.shape[0]
    frames, centres = [], []
    for step in range(steps):
        progress = step / (steps - 1)
        x_first = int(20 + progress * (width - side - 40))
        x_second = int(width - side - 20 - progress * (width - side - 40))
        y_first, y_second = 40, height - side - 40
        frame = np.full((height, width, 3), 100, np.uint8)
        frame[y_first : y_first + side, x_first : x_first + side] = first
        frame[y_second : y_second + side, x_second : x_second + side] = second
        frames.append(frame)
        centres.append(((x_first + side / 2, y_first + side / 2), (x_second + side / 2, y_second + side / 2)))
    return frames, centres


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()
