"""The detector stage: MediaPipe Tasks FaceDetector (BlazeFace) on BGR frames, faces as plain dataclasses.

VIDEO running mode for streams (MediaPipe then tracks between frames and wants increasing
timestamps), IMAGE mode for stills. Short range suits faces within about 2 m of a webcam; full
range finds the smaller faces of group photos and stages.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

import cv2
import numpy as np

from model.errors import ExpressionDetectorError
from realtime.detector_model import (
    PROXY_VARIABLES,
    DetectorModelError,
    ensure_detector_model,
)
from realtime.native import quiet_native, signals_held
from realtime.types import Detection

# Large stills are detected on a copy no longer than this: BlazeFace sees at most 192x192 anyway,
# and converting a 10000x10000 photo to RGB at full size would only cost memory.
MAX_DETECTION_SIDE = 1920


class DetectorError(ExpressionDetectorError):
    """The face detector cannot be set up; the message says why."""


class _MediaPipeImportGuard(importlib.abc.MetaPathFinder):
    """Keeps MediaPipe's import from pulling in what the live path never uses.

    MediaPipe tries ``from tensorflow.tools.docs import doc_controls`` only to decorate its API docs
    and falls back when TensorFlow is absent; where TensorFlow is installed (train.py needs it) that
    import alone costs about 3 s and 500 MB, so TensorFlow is reported missing. Its drawing helpers
    import matplotlib.pyplot at module level (a quarter of a second) for plots we never draw, so
    pyplot is loaded lazily: only if something touches it.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name == "matplotlib.pyplot":
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = importlib.util.LazyLoader(spec.loader)
            return spec
        return None


# MediaPipe's PyPI build posts usage metrics (task, mode, invocation counts, latencies; no images) to
# https://play.googleapis.com/log through its bundled libcurl, at close() and every ~60 s, with no
# option to turn it off (google-ai-edge/mediapipe#6291). libcurl honours https_proxy, so pointing it
# at a closed local port makes every such upload fail on the spot, before any DNS lookup.
TELEMETRY_SINK_PROXY = "http://127.0.0.1:9"


class _TelemetryBlock:
    """Points the process's HTTPS at a dead local proxy while any detector is open, then puts it back.

    The proxy variables are process-wide, so a program that embeds the detector would otherwise lose
    HTTPS for good. A count of open detectors decides when to restore: the last ``close()`` (which is
    when MediaPipe uploads) restores exactly what was there before the first detector opened. The
    detector model is fetched before this, by a pip subprocess that gets the user's own settings.
    """

    def __init__(self) -> None:
        self._holders = 0
        self._saved: dict[str, str] = {}

    def acquire(self) -> None:
        if self._holders == 0:
            self._saved = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
            for name in PROXY_VARIABLES:
                os.environ.pop(name, None)
            os.environ["https_proxy"] = os.environ["HTTPS_PROXY"] = TELEMETRY_SINK_PROXY
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            for name in PROXY_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(self._saved)


TELEMETRY_BLOCK = _TelemetryBlock()


def _import_mediapipe():
    if "mediapipe.tasks.python.vision" in sys.modules:
        import mediapipe
        from mediapipe.tasks.python import core, vision

        return mediapipe, core, vision
    guard = _MediaPipeImportGuard()
    sys.meta_path.insert(0, guard)
    try:
        import mediapipe
        from mediapipe.tasks.python import core, vision
    finally:
        sys.meta_path.remove(guard)
    return mediapipe, core, vision


def largest_face(detections: list[Detection]) -> Detection | None:
    return max(detections, key=lambda d: d.area, default=None)


DETECTOR_RANGES = ("auto", "short", "full", "both")
# Two detections of one face by the short- and full-range models overlap at least this much.
SAME_FACE_IOU = 0.3


def resolve_range(model_range: str, still_images: bool) -> tuple[str, ...]:
    """The BlazeFace models to run: ``auto`` is both for photos (a person sees small and large faces
    alike; the short-range model alone misses both faces of obama_and_biden.jpg) and short range for
    video, where its 2 ms a frame matter."""
    if model_range not in DETECTOR_RANGES:
        raise DetectorError(f"unknown detector range {model_range!r}; choose one of {', '.join(DETECTOR_RANGES)}")
    if model_range == "auto":
        return ("short", "full") if still_images else ("short",)
    return ("short", "full") if model_range == "both" else (model_range,)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def merge_detections(detections: list[Detection]) -> list[Detection]:
    """One detection per face: where two overlap (the two models found the same face), the surer one stays."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(_overlap(detection.box, other.box) < SAME_FACE_IOU for other in kept):
            kept.append(detection)
    return sorted(kept, key=lambda d: (d.box[0], d.box[1]))


QUIET_FIRST_FRAMES = 10  # frames whose native messages are kept off stderr (see detect)


class FaceDetector:
    """Faces in BGR frames. ``still_images`` selects IMAGE mode; otherwise frames must come in time order.

    ``model_range``: ``short`` (faces within about 2 m), ``full`` (smaller, farther faces), ``both``
    merged, or ``auto`` (both for stills, short for video).
    """

    def __init__(self, model_range: str = "auto", still_images: bool = False, min_score: float = 0.5) -> None:
        ranges = resolve_range(model_range, still_images)
        try:
            model_paths = [ensure_detector_model(name) for name in ranges]
        except DetectorModelError as error:
            raise DetectorError(str(error)) from None
        self._mediapipe, core, vision = _import_mediapipe()
        mode = vision.RunningMode.IMAGE if still_images else vision.RunningMode.VIDEO
        self._detectors: list = []
        TELEMETRY_BLOCK.acquire()
        self._closed = False
        try:
            for model_path in model_paths:
                options = vision.FaceDetectorOptions(
                    base_options=core.base_options.BaseOptions(model_asset_path=str(model_path)),
                    running_mode=mode,
                    min_detection_confidence=min_score,
                )
                try:
                    with quiet_native():  # LiteRT's set-up lines, 46 "Sparsity tensors" warnings for full range
                        self._detectors.append(vision.FaceDetector.create_from_options(options))
                except (RuntimeError, ValueError) as error:
                    raise DetectorError(
                        f"MediaPipe could not load the face detector {model_path} ({error})") from None
        except DetectorError:
            self.close()
            raise
        self.ranges = ranges
        self._still_images = still_images
        self._last_timestamp_ms = -1
        self._quiet_frames_left = QUIET_FIRST_FRAMES

    def detect(self, frame: np.ndarray, timestamp_s: float = 0.0) -> list[Detection]:
        """Faces in a BGR frame; ``timestamp_s`` is the frame's time in a stream (ignored for stills)."""
        height, width = frame.shape[:2]
        factor = min(1.0, MAX_DETECTION_SIDE / max(height, width))
        small = frame if factor == 1.0 else cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        # VIDEO mode rejects non-increasing timestamps; equal times (e.g. a paused clip) are nudged forward.
        timestamp_ms = max(int(round(timestamp_s * 1000)), self._last_timestamp_ms + 1)
        self._last_timestamp_ms = timestamp_ms
        # The first frame makes absl and LiteRT log once ("Logging before InitGoogle", "not aligned"). With only
        # that frame quiet the line still reached stderr in 3 of 14 runs of main.py on the clip (it can come a
        # little late); with the first three quiet, in none of 14 then, but in 1 of 12 on a busier machine (and once
        # in a CI run of test_rough_edges); with the first ten quiet, in none of 14 (stop 23).
        quiet = self._quiet_frames_left > 0
        with quiet_native() if quiet else contextlib.nullcontext(), signals_held():
            results = self._run_mediapipe(rgb, timestamp_ms)
        self._quiet_frames_left -= quiet
        found = [self._to_detection(d, width, height, factor) for result in results for d in result.detections]
        return merge_detections(found) if len(self._detectors) > 1 else found

    def _run_mediapipe(self, rgb: np.ndarray, timestamp_ms: int) -> list:
        """Every model on one picture. Called with signals held, so a Ctrl-C cannot leave a half-built
        ``mediapipe.Image`` behind whose ``__del__`` fails at interpreter exit; the image is freed on return."""
        image = self._mediapipe.Image(image_format=self._mediapipe.ImageFormat.SRGB, data=rgb)
        if self._still_images:
            return [detector.detect(image) for detector in self._detectors]
        return [detector.detect_for_video(image, timestamp_ms) for detector in self._detectors]

    @staticmethod
    def _to_detection(detection, width: int, height: int, factor: float) -> Detection:
        box = detection.bounding_box
        x, y = box.origin_x / factor, box.origin_y / factor
        w, h = box.width / factor, box.height / factor
        # BlazeFace's keypoints, in order: right eye, left eye, nose tip, mouth centre, right and left ear tragion.
        points = [(k.x * width, k.y * height) for k in (detection.keypoints or [])[:4]]
        right_eye, left_eye = (points[0], points[1]) if len(points) >= 2 else (None, None)
        nose, mouth = (points[2], points[3]) if len(points) == 4 else (None, None)
        score = detection.categories[0].score if detection.categories else 0.0
        return Detection((int(round(x)), int(round(y)), int(round(w)), int(round(h))), float(score),
                         right_eye, left_eye, nose, mouth)

    def close(self) -> None:
        """Close MediaPipe's detectors now (not at interpreter exit, where their __del__ can fail), then restore
        the proxy settings. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            with quiet_native():  # LiteRT's "DestroyAccelerator" lines
                for detector in self._detectors:
                    detector.close()
        finally:
            self._detectors = []
            TELEMETRY_BLOCK.release()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
