"""Sinks: where annotated frames and results go. Window, video file, screenshots, JSONL log, progress bar.

Every sink has ``consume(frame, faces, annotated)`` and ``close()``; the pipeline closes all of
them in a ``finally`` block, so a recording is finalized however the run ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, TextIO

import cv2
import numpy as np

from model.errors import ExpressionDetectorError
from realtime.annotator import Annotator
from realtime.native import signals_held
from realtime.pipeline import FrameRate
from realtime.types import Face, Frame

log = logging.getLogger(__name__)

MAX_WINDOW_SIZE = (1280, 720)


class OutputError(ExpressionDetectorError):
    """An output that cannot be written; raised before any frame is processed where possible."""


_H264 = ("libx264", {"preset": "veryfast", "crf": "23"})
_VP9 = ("libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"})
_FASTSTART = {"movflags": "+faststart"}
# File suffix -> (FFmpeg muxer, encoder, encoder options, muxer options) of what --output writes.
VIDEO_CONTAINERS = {
    ".mp4": ("mp4", *_H264, _FASTSTART),
    ".m4v": ("mp4", *_H264, _FASTSTART),
    ".mov": ("mov", *_H264, _FASTSTART),
    ".mkv": ("matroska", *_H264, {}),
    ".webm": ("webm", *_VP9, {}),
}


def video_container(path: Path) -> tuple[str, str, dict, dict]:
    """What a video output named ``path`` is written as; an unknown suffix is refused, never written as another."""
    found = VIDEO_CONTAINERS.get(path.suffix.lower())
    if found is None:
        shown = f"{path.suffix} is not a video format this writes" if path.suffix else "it has no file suffix"
        raise OutputError(f"cannot write the output video {path}: {shown}; name it .mp4, .mov or .mkv (H.264) "
                          f"or .webm (VP9)")
    return found


def check_output_path(path: Path, what: str) -> None:
    """Fail before the first frame, not after minutes of processing, when an output cannot be written."""
    if path.is_dir():
        raise OutputError(f"cannot write the {what} {path}: it is a folder; name a file in it")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write the {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write the {what} {path}: folder {parent} is not writable")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same inode where both exist (hard and symbolic links, ``..``),
    else the same resolved path."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _names_same(a: Path, b: Path) -> bool:
    return _same_file(a, b) or os.path.realpath(a) == os.path.realpath(b)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies somewhere under it, links resolved."""
    resolved, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return resolved == root or root in resolved.parents or _same_file(path, folder)


def check_outputs_apart(source: Path | None, outputs: dict[str, Path], image_folders: dict[str, Path]) -> None:
    """Refuse, before anything is opened, an output that would overwrite the source or another output.

    ``outputs`` are files by role (``--output``, ``--log``); ``image_folders`` are folders that receive images
    (screenshots), which must not be the source or lie inside a source folder, where a later run would read
    them back as photos. Every spelling of one file counts: ``dir/../clip.mp4``, a symbolic or a hard link.
    """
    named = list(outputs.items())
    for index, (role, path) in enumerate(named):
        if source is not None and source.is_file() and _names_same(path, source):
            raise OutputError(f"{role} {path} is the source itself; writing it would destroy the source, so name "
                              f"another file")
        if source is not None and source.is_dir() and path.exists() and _same_file(path, source):
            raise OutputError(f"{role} {path} is the source folder; name a file to write")
        for other_role, other in named[:index]:
            if _names_same(path, other):
                raise OutputError(f"{role} and {other_role} are the same file ({path}); give each its own file")
    for role, folder in image_folders.items():
        if source is not None and (source.is_dir() and _inside(folder, source)):
            raise OutputError(f"{role} {folder} is inside the source folder {source}, where its pictures would be "
                              f"read as photos; choose a folder outside it")
        for other_role, path in named:
            if _names_same(path, folder):
                raise OutputError(f"{other_role} {path} is the {role}; give each its own place")


def check_screenshot_folder(directory: Path) -> None:
    """Fail up front where the folder can be neither found nor created, without creating it yet."""
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create the screenshot folder {directory}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise OutputError(f"cannot create the screenshot folder {directory}: {existing} is not writable")


class VideoSink:
    """Writes annotated frames at the input's size and frame rate, in the container the file name says.

    H.264 (yuv420p) in MP4, MOV or MKV, VP9 in WebM (``VIDEO_CONTAINERS``): browsers and most players
    refuse MPEG-4 Part 2, the only MP4 codec OpenCV's wheels can write; PyAV's wheels carry libx264 and
    libvpx-vp9. MP4 and MOV get their index at the front. The ``veryfast`` preset (VP9: real-time
    speed) keeps encoding cheap beside a live run. 4:2:0 chroma needs even sides, so an odd last row
    or column is dropped.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import av  # here, not at the top: a run without --output does not pay its import

        check_output_path(path, "output video")
        container, codec, options, muxer_options = video_container(path)
        self.path = path
        self.frames_written = 0
        self._size = (max(2, size[0] - size[0] % 2), max(2, size[1] - size[1] % 2))
        self._closed = False
        try:
            self._container = av.open(str(path), "w", format=container, options=muxer_options)
            self._stream = self._container.add_stream(codec, rate=Fraction(round(fps * 1000), 1000), options=options)
        except (av.FFmpegError, ValueError) as error:
            raise OutputError(f"cannot write the output video {path} ({error})") from None
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"

    def _fit(self, annotated: np.ndarray) -> np.ndarray:
        width, height = self._size
        extra_w, extra_h = annotated.shape[1] - width, annotated.shape[0] - height
        if extra_w in (0, 1) and extra_h in (0, 1):
            return np.ascontiguousarray(annotated[:height, :width])
        return cv2.resize(annotated, self._size, interpolation=cv2.INTER_AREA)

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        import av

        picture = av.VideoFrame.from_ndarray(self._fit(annotated), format="bgr24")
        # Held, so that Ctrl-C or SIGTERM cannot fall between encoding and muxing: the packets the encoder hands
        # back (the first one is the key frame every later frame refers to) must reach the file, or it will not play.
        with signals_held(), _encoder_errors_as_os_errors():
            self._container.mux(self._stream.encode(picture))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and write the index; the file plays from then on. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            with _encoder_errors_as_os_errors():
                self._container.mux(self._stream.encode(None))
        finally:
            with _encoder_errors_as_os_errors():
                self._container.close()


@contextlib.contextmanager
def _encoder_errors_as_os_errors() -> Iterator[None]:
    """FFmpeg's failures as ``OSError``, the type the run loop treats as a failed output (exit status 1);
    a full disk already is one."""
    import av

    try:
        yield
    except av.FFmpegError as error:
        if isinstance(error, OSError):
            raise
        raise OSError(f"the H.264 encoder failed: {error}") from None


class ScreenshotSink:
    """Saves annotated frames as PNG named by source and frame index, every N frames or when asked (``s``).

    The folder is created with the first screenshot, so a run that saves none leaves nothing behind;
    whether it can be created is checked up front.
    """

    def __init__(self, directory: Path, every: int | None = None) -> None:
        check_screenshot_folder(directory)
        self.directory = directory
        self.every = every
        self.saved: list[Path] = []

    def save(self, frame: Frame, annotated: np.ndarray) -> Path:
        """Written under a temporary name and renamed, so whoever watches the folder never reads half a PNG."""
        path = self.directory / f"{frame.source_name}_{frame.index:06d}.png"
        partial = path.with_name(path.name + ".part")
        ok, encoded = cv2.imencode(".png", annotated)
        if not ok:
            raise OutputError(f"could not encode the screenshot {path} as PNG")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(encoded.tobytes())
            os.replace(partial, path)
        except OSError as error:
            raise OutputError(f"could not write the screenshot {path}: {error.strerror}") from None
        self.saved.append(path)
        log.info("saved %s", path)
        return path

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        if self.every and frame.index % self.every == 0:
            self.save(frame, annotated)

    def close(self) -> None:
        """Each screenshot is complete once written."""


def face_record(frame: Frame, faces: list[Face]) -> dict:
    """The one JSON record of a frame or photo, as ``--log``, ``--json`` and the batch front end write it.

    ``t`` is the frame's time in seconds in its video or stream, null for a photo (which has none)."""
    return {
        "source": frame.source or frame.source_name,
        "frame": frame.index,
        "t": None if frame.is_still else round(frame.timestamp_s, 4),
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


class JsonlSink:
    """One JSON record per processed frame (see ``face_record``), into a file or an open text stream (stdout).

    ``label``/``probs`` are what is drawn (smoothed, with hysteresis); ``raw_label``/``raw_probs`` are
    the classifier's output for this frame alone. Each record is flushed as written, so a reader
    following the log or the pipe sees every frame as it is processed.
    """

    needs_picture = False

    def __init__(self, target: Path | TextIO) -> None:
        if isinstance(target, (str, Path)):
            check_output_path(Path(target), "log")
            self._file, self._owned = Path(target).open("w", encoding="utf-8"), True
        else:
            self._file, self._owned = target, False

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray | None) -> None:
        if not frame.analysed:
            return  # one record per analysed frame: a held label is no new reading
        self._file.write(json.dumps(face_record(frame, faces)) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()
        else:
            self._file.flush()


class WindowSink:
    """A window with keys: q or Esc quits, s saves a screenshot, space pauses and resumes.

    The title names what is shown (the photo of a folder, the video, the stream). With ``hold_stills``
    (image sources) each picture stays up until a key is pressed. With ``frame_interval_s`` a video
    plays at its own frame rate rather than as fast as the CPU allows. ``stats`` draws the frame-rate
    and face-count line onto the window only, so recordings and screenshots stay clean.
    """

    def __init__(self, title: str, screenshots: ScreenshotSink, hold_stills: bool = False,
                 frame_interval_s: float | None = None, stats: Annotator | None = None) -> None:
        self.title = title
        self.quit_requested = False
        self._screenshots = screenshots
        self._paused = False
        self._hold_stills = hold_stills
        self._frame_interval_s = frame_interval_s
        self._stats = stats
        self._rate = FrameRate()
        self._clock: float | None = None
        self._shown_size: tuple[int, int] | None = None
        self._shown_title: str | None = None
        self._last: tuple[Frame, np.ndarray] | None = None
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

    def _show(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        self._fit_window(annotated.shape[1], annotated.shape[0])
        title = f"{self.title} - {frame.source or frame.source_name}"
        if title != self._shown_title:
            cv2.setWindowTitle(self.title, title)
            self._shown_title = title
        shown = annotated
        if self._stats is not None:
            shown = annotated.copy()
            fps = None if self._hold_stills else self._rate.tick()
            self._stats.draw_stats(shown, faces, fps)
        cv2.imshow(self.title, shown)
        self._last = (frame, annotated)

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None:
        self._show(frame, faces, annotated)
        if self._hold_stills:
            self._hold(frame, annotated)
            return
        self._handle_key(cv2.waitKey(self._wait_ms(frame)), frame, annotated)
        while self._paused and not self.quit_requested:
            self._handle_key(cv2.waitKey(50), frame, annotated)

    def _wait_ms(self, frame: Frame) -> int:
        """How long this frame stays up: until the next one is due at the video's own rate (1 ms flat out).

        The schedule restarts after a pause, and after falling more than a quarter second behind, so a
        stall is not followed by a burst of frames catching up."""
        if self._frame_interval_s is None:
            return 1
        now = time.monotonic()
        if self._clock is None or now - (self._clock + frame.timestamp_s) > 0.25:
            self._clock = now - frame.timestamp_s
        return max(1, round((self._clock + frame.timestamp_s + self._frame_interval_s - now) * 1000))

    def _hold(self, frame: Frame, annotated: np.ndarray) -> None:
        """Keep the picture up until a key other than s (screenshot) or space, or until its window is closed."""
        while not self.quit_requested:
            key = cv2.waitKey(100)
            if key == -1:
                if self._window_closed():
                    return
                continue
            key &= 0xFF
            if key in (ord("q"), 27):
                self.quit_requested = True
            elif key == ord("s"):
                self._screenshots.save(frame, annotated)
            elif key != ord(" "):
                return

    def hold_last(self) -> None:
        """At the end of a video or stream, keep its last frame up until a key, as a photo is kept."""
        if self._last is not None and not self._hold_stills:
            self._hold(*self._last)

    def _window_closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def _handle_key(self, key: int, frame: Frame, annotated: np.ndarray) -> None:
        key &= 0xFF
        if key in (ord("q"), 27):
            self.quit_requested = True
        elif key == ord("s"):
            self._screenshots.save(frame, annotated)
        elif key == ord(" "):
            self._paused = not self._paused
            self._clock = None

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class ProgressSink:
    """A progress bar on stderr (tqdm) for headless runs: frames done, of how many where known, and frames/s.

    Messages logged meanwhile go through ``tqdm.write`` (see main.py), so they get lines of their own.
    """

    needs_picture = False

    def __init__(self, total: int | None) -> None:
        self._total = total
        self._bar = None

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray | None) -> None:
        if self._bar is None:
            # Made with the first frame: importing tqdm (mostly importlib.metadata) need not delay it.
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, unit="frame", file=sys.stderr, dynamic_ncols=True,
                             mininterval=0.2)
        self._bar.update(frame.index + 1 - self._bar.n)  # frames --sample-fps skipped count as done too

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
