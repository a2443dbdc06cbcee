"""Sinks: where annotated frames and results go. Window, video file, screenshots, JSONL log, progress line.

Every sink has ``consume(frame, faces, annotated)`` and ``close()``; the pipeline closes all of
them in a ``finally`` block, so a recording is finalized however the run ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from model.errors import ExpressionDetectorError
from realtime.types import Face, Frame

MAX_WINDOW_SIZE = (1280, 720)


class OutputError(ExpressionDetectorError):
    """An output that cannot be written; raised before any frame is processed where possible."""


def _writable_parent(path: Path, what: str) -> None:
    """Fail before the first frame, not after minutes of processing, when an output cannot be written."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write the {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write the {what} {path}: folder {parent} is not writable")


class VideoSink:
    """Writes annotated frames to an MP4 at the input's size and frame rate."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        _writable_parent(path, "output video")
        self.path = path
        self.frames_written = 0
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise OutputError(f"cannot write the output video {path}: OpenCV has no MP4 encoder for it")
        self._size = size

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        if (annotated.shape[1], annotated.shape[0]) != self._size:
            annotated = cv2.resize(annotated, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(annotated)
        self.frames_written += 1

    def close(self) -> None:
        self._writer.release()


class ScreenshotSink:
    """Saves annotated frames as PNG named by source and frame index, every N frames or when asked (``s``)."""

    def __init__(self, directory: Path, every: int | None = None) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the screenshot folder {directory}: {error.strerror}") from None
        _writable_parent(directory / "probe.png", "screenshots")
        self.directory = directory
        self.every = every
        self.saved: list[Path] = []

    def save(self, frame: Frame, annotated: np.ndarray) -> Path:
        path = self.directory / f"{frame.source_name}_{frame.index:06d}.png"
        if not cv2.imwrite(str(path), annotated):
            raise OutputError(f"could not write the screenshot {path}")
        self.saved.append(path)
        print(f"saved {path}", file=sys.stderr)
        return path

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        if self.every and frame.index % self.every == 0:
            self.save(frame, annotated)

    def close(self) -> None:
        """Each screenshot is complete once written."""


class JsonlSink:
    """One JSON record per processed frame: frame index, time, and every face with its id, box and probabilities.

    ``label``/``probs`` are what is drawn (smoothed, with hysteresis); ``raw_label``/``raw_probs`` are
    the classifier's output for this frame alone.
    """

    def __init__(self, path: Path) -> None:
        _writable_parent(path, "log")
        self._file = path.open("w", encoding="utf-8")

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        record = {
            "frame": frame.index,
            "t": round(frame.timestamp_s, 4),
            "faces": [
                {
                    "id": face.track_id,
                    "box": list(face.detection.box),
                    "score": round(face.detection.score, 4),
                    "label": face.label,
                    "probs": {name: round(p, 4) for name, p in face.probs.items()},
                    "uncertain": face.uncertain,
                    "raw_label": face.raw_label,
                    "raw_probs": {name: round(p, 4) for name, p in face.raw_probs.items()},
                }
                for face in faces
            ],
        }
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()


class WindowSink:
    """A window with keys: q or Esc quits, s saves a screenshot, space pauses and resumes.

    With ``hold_stills`` (image sources) each picture stays up until a key is pressed.
    """

    def __init__(self, title: str, screenshots: ScreenshotSink, hold_stills: bool = False) -> None:
        self.title = title
        self.quit_requested = False
        self._screenshots = screenshots
        self._paused = False
        self._hold_stills = hold_stills
        self._shown_size: tuple[int, int] | None = None
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as error:
            raise OutputError(f"cannot open a window ({error.err}); run with --no-display on a machine without a "
                              f"screen") from None

    def _fit_window(self, width: int, height: int) -> None:
        """Show frames at their own size, shrunk only to fit a common screen."""
        if self._shown_size != (width, height):
            scale = min(1.0, MAX_WINDOW_SIZE[0] / width, MAX_WINDOW_SIZE[1] / height)
            cv2.resizeWindow(self.title, int(width * scale), int(height * scale))
            self._shown_size = (width, height)

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        self._fit_window(annotated.shape[1], annotated.shape[0])
        cv2.imshow(self.title, annotated)
        while not self.quit_requested:
            key = cv2.waitKey(50 if self._paused else 0 if self._hold_stills else 1)
            self._handle_key(key, frame, annotated)
            if self._paused:
                continue
            # A still stays up until a key other than s (screenshot) or space is pressed, or its window closes.
            if not self._hold_stills or key == -1 or key & 0xFF not in (ord("s"), ord(" ")):
                return

    def _handle_key(self, key: int, frame: Frame, annotated: np.ndarray) -> None:
        key &= 0xFF
        if key in (ord("q"), 27):
            self.quit_requested = True
        elif key == ord("s"):
            self._screenshots.save(frame, annotated)
        elif key == ord(" "):
            self._paused = not self._paused

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class ProgressLine:
    """A one-line progress bar with frames/s on stderr, for headless runs over a file."""

    def __init__(self, total: int | None, stream=sys.stderr) -> None:
        self.total = total
        self._stream = stream
        self._last_draw = 0.0

    def update(self, done: int, fps: float) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.2:
            return
        self._last_draw = now
        if self.total:
            filled = int(30 * min(done / self.total, 1.0))
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}"
        else:
            bar = f"{done} frames"
        self._stream.write(f"\r{bar}  {fps:.0f} frames/s")
        self._stream.flush()

    def finish(self) -> None:
        if self._last_draw:
            self._stream.write("\n")
            self._stream.flush()
