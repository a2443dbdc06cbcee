"""Sources: a webcam, a video file, an image, or a folder of images, all yielding ``Frame``s.

A camera (or a live stream) is read on its own thread that keeps only the newest frame, so a slow consumer sees the
present rather than a growing backlog. A video file is read in order with no frame dropped, and
its timestamps come from the frame index and the file's frame rate, so results do not depend on
how fast this machine happens to be.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import cv2

from model.errors import ExpressionDetectorError
from model.images import IMAGE_SUFFIXES, is_image_path, read_image
from realtime.native import quiet_native
from realtime.sampling import FrameSampler
from realtime.types import Frame

log = logging.getLogger(__name__)

CAMERA_BACKENDS = {
    "any": cv2.CAP_ANY,
    "v4l2": cv2.CAP_V4L2,
    "gstreamer": cv2.CAP_GSTREAMER,
    "ffmpeg": cv2.CAP_FFMPEG,
    "dshow": cv2.CAP_DSHOW,
    "msmf": cv2.CAP_MSMF,
    "avfoundation": cv2.CAP_AVFOUNDATION,
}
DEFAULT_FPS = 30.0


class SourceError(ExpressionDetectorError):
    """A source that cannot be opened or read; the message says which and what to try."""


class VideoFileSource:
    """Every frame of a video file, in order.

    ``decoder_threads``: FFmpeg's decoding threads (default: one per core). A single pipeline gains from them,
    since the decoder works ahead while a frame is analysed; processes that each have a core already (batch
    workers) only make them compete.
    """

    is_live = False
    is_still = False

    def __init__(self, path: Path, decoder_threads: int | None = None) -> None:
        self.path = path
        self.name = path.stem
        if not path.is_file():
            raise SourceError(f"video file {path} does not exist")
        if path.stat().st_size == 0:
            raise SourceError(f"video file {path} is empty (0 bytes)")
        with quiet_native():  # FFmpeg's "moov atom not found" and OpenCV's warnings, before our own sentence
            threads = [] if decoder_threads is None else [cv2.CAP_PROP_N_THREADS, decoder_threads]
            self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, threads)
            ok, self._first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise SourceError(
                f"{path} cannot be decoded as a video (not a video, damaged, or cut short before its index)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.size = (self._first.shape[1], self._first.shape[0])
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.frames_read = 1

    @property
    def end_note(self) -> str | None:
        """Why decoding stopped before the frame count the container announces (a cut-off file), if it did."""
        if self.frame_count is not None and self.frames_read < self.frame_count:
            return f"ended after {self.frames_read} of its {self.frame_count} frames; the file is cut short or damaged"
        return None

    def __iter__(self) -> Iterator[Frame]:
        return self.frames(FrameSampler(), every_frame=True)

    def frames(self, sampler: FrameSampler, every_frame: bool) -> Iterator[Frame]:
        """The frames ``sampler`` wants, and with ``every_frame`` the others too, marked not analysed.

        A frame nobody needs is only grabbed: demuxed and decoded (H.264 frames depend on each other), never
        converted to BGR or copied out, which is most of what a frame costs after decoding.
        """
        index, image = 0, self._first
        while True:
            timestamp = index / self.fps
            wanted = sampler.wants(timestamp)
            if wanted or every_frame:
                if image is None:
                    ok, image = self._capture.retrieve()
                    if not ok:
                        return
                yield Frame(image, index, timestamp, self.name, self.path.name, analysed=wanted)
            index += 1
            if not self._capture.grab():
                return
            self.frames_read = index + 1
            image = None

    def close(self) -> None:
        self._capture.release()


class ImageSource:
    """One image or every image in a folder (sorted by name), each a frame of its own."""

    is_live = False
    is_still = True
    fps = None
    end_note = None

    def __init__(self, path: Path) -> None:
        self.name = path.stem
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if is_image_path(p))
            if not self.paths:
                raise SourceError(
                    f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            self.paths = [path]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            raise SourceError(f"image {path} does not exist")
        else:
            raise SourceError(f"folder {path} does not exist")
        self.frame_count = len(self.paths)
        self.size = None

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = read_image(path)
            if image is None:
                if len(self.paths) == 1:
                    raise SourceError(f"image {path} is empty (0 bytes)" if _is_empty(path)
                                      else f"{path} is not an image OpenCV can decode")
                log.warning("skipped unreadable image %s", path)
                continue
            yield Frame(image, index, float(index), path.stem, path.name, is_still=True)

    def close(self) -> None:
        """Nothing stays open between images."""


class LiveSource:
    """The newest frame of a camera or live stream, read on a background thread.

    A slow consumer gets the present frame, never a backlog. A device that delivers nothing for
    ``stall_timeout_s`` (unplugged, stream dropped) ends the stream, so outputs are finalized.
    """

    is_live = True
    is_still = False
    frame_count = None

    def __init__(self, device: int | str, backend: str = "any", stall_timeout_s: float = 5.0) -> None:
        self.name = f"camera{device}" if isinstance(device, int) else Path(str(device)).stem or "stream"
        self.label = f"camera{device}" if isinstance(device, int) else _without_credentials(device)
        with quiet_native():  # OpenCV's V4L2 warnings and FFmpeg's "Camera index out of range" exception text
            self._capture = _open_capture(device, CAMERA_BACKENDS[backend], stall_timeout_s)
            ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise SourceError(self._open_failure(device, backend, stall_timeout_s))
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.size = (first.shape[1], first.shape[0])
        self.end_note: str | None = None
        self._stall_timeout_s = stall_timeout_s
        self._newest = first
        self._newest_serial = 1
        self._condition = threading.Condition()
        self._running = True
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._read_forever, name="frame-reader", daemon=True)
        self._thread.start()

    @staticmethod
    def _open_failure(device: int | str, backend: str, stall_timeout_s: float) -> str:
        if isinstance(device, str):
            return (f"stream {_without_credentials(device)} could not be opened or sent no frame within "
                    f"{stall_timeout_s:g} s (--stall-timeout)")
        other = ", ".join(name for name in CAMERA_BACKENDS if name not in ("any", backend))
        return (f"camera {device} could not be opened (backend {backend}); check that it is connected and not "
                f"used by another program, try another index with --source {device + 1}, or another capture "
                f"backend with --camera-backend ({other})")

    def _read_forever(self) -> None:
        while self._running:
            ok, image = self._capture.read()
            with self._condition:
                if not ok:
                    self._running = False
                    self.end_note = self.end_note or "stopped delivering frames; treated as the end of the stream"
                else:
                    self._newest, self._newest_serial = image, self._newest_serial + 1
                self._condition.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        seen, index = 0, 0
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._newest_serial > seen or not self._running,
                                         timeout=self._stall_timeout_s)
                if self._newest_serial == seen:
                    if self._running:
                        self.end_note = (f"delivered no frame for {self._stall_timeout_s:g} s; treated as the end "
                                         f"of the stream")
                    return
                image, seen = self._newest, self._newest_serial
            yield Frame(image, index, time.monotonic() - self._started, self.name, self.label)
            index += 1

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self._capture.release()


def _without_credentials(address: str) -> str:
    """A stream address fit for logs and records: ``rtsp://user:secret@host/x`` becomes ``rtsp://host/x``."""
    parts = urlsplit(address)
    if "@" not in parts.netloc:
        return address
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _open_capture(device: int | str, backend: int, timeout_s: float) -> cv2.VideoCapture:
    """A capture whose connecting and reading give up after ``timeout_s``: FFmpeg would otherwise wait 30 s on a
    stream that accepts the connection and sends nothing. Cameras keep their backend's own behaviour."""
    if isinstance(device, int):
        return cv2.VideoCapture(device, backend)
    timeout_ms = int(timeout_s * 1000)
    return cv2.VideoCapture(device, backend,
                            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def open_source(source: str, camera_backend: str = "any",
                stall_timeout_s: float = 5.0) -> VideoFileSource | ImageSource | LiveSource:
    """A camera index (``0``), a stream URL or named pipe, an image, a folder of images, or a video file."""
    if source.isdigit():
        return LiveSource(int(source), camera_backend, stall_timeout_s)
    path = Path(source)
    if "://" in source or (path.exists() and stat.S_ISFIFO(path.stat().st_mode)):
        return LiveSource(source, "ffmpeg" if camera_backend == "any" else camera_backend, stall_timeout_s)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES or source.endswith(("/", os.sep)):
        return ImageSource(path)
    return VideoFileSource(path)
