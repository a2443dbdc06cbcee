"""The live loop: source -> detector -> preprocess -> classifier -> tracker -> annotator -> sinks, frame by frame."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np

from model.preprocess import crop_face, faces_to_batch
from realtime.annotator import Annotator
from realtime.classifier import ExpressionClassifier
from realtime.detector import FaceDetector
from realtime.native import signals_held
from realtime.tracker import FaceTracker, untracked_faces
from realtime.types import Detection, Face, Frame


class Sink(Protocol):
    """Where processed frames go. A sink that never looks at the picture (a log, a timeline) says so with a class
    attribute ``needs_picture = False``: when no sink of a run needs one, no frame is drawn (``annotated`` is
    None): a headless run saves the annotator's copy and drawing on every frame."""

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunSummary:
    frames: int = 0  # of the source, up to the last one read
    analysed: int = 0  # fewer than ``frames`` with --sample-fps; faces are counted on these
    faces: int = 0
    frames_with_faces: int = 0
    seconds: float = 0.0
    reached_end: bool = False  # the source ran out (rather than a stop): only then is a short file worth a word
    still_images: bool = False  # photos: counted as photos, and a frame rate would only measure start-up

    @property
    def mean_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.still_images:
            photos = "photo" if self.frames == 1 else "photos"
            faces = "face" if self.faces == 1 else "faces"
            return f"{self.frames} {photos}, {self.faces} {faces} (a face in {self.frames_with_faces} of them)"
        analysed = f" ({self.analysed} analysed)" if self.analysed != self.frames else ""
        return (f"{self.frames} frames{analysed}, {self.faces} faces (a face in {self.frames_with_faces} frames), "
                f"mean {self.mean_fps:.1f} frames/s")


class FrameRate:
    """Frames per second smoothed over about a second, for the on-screen overlay."""

    def __init__(self, smoothing: float = 0.05) -> None:
        self._smoothing = smoothing
        self._last: float | None = None
        self.value: float | None = None

    def tick(self) -> float | None:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            instant = 1.0 / (now - self._last)
            self.value = instant if self.value is None else self.value + self._smoothing * (instant - self.value)
        self._last = now
        return self.value


class ExpressionPipeline:
    """Everything between a decoded frame and its annotated picture.

    For a stream the tracker gives each face an id and steadies its label; for still images
    (``still_images``) every picture stands alone and its faces carry their own probabilities.
    """

    def __init__(self, detector: FaceDetector, classifier: ExpressionClassifier, tracker: FaceTracker,
                 annotator: Annotator, still_images: bool = False) -> None:
        self.detector = detector
        self.classifier = classifier
        self.tracker = tracker
        self.annotator = annotator
        self.still_images = still_images

    def preprocess(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """Every detected face cut out, levelled and framed as the model's training faces were (its card's
        framing), as one model batch."""
        framing = self.classifier.card.framing
        crops = [crop_face(image, detection, framing) for detection in detections]
        return faces_to_batch(crops, self.classifier.input_spec)

    def track(self, frame: Frame, detections: list[Detection], probs: np.ndarray) -> list[Face]:
        """Ids, smoothing and steady labels for a stream (a scene cut ends every track); unrelated still images
        share no history."""
        if self.still_images:
            return untracked_faces(detections, probs, tuple(self.classifier.classes),
                                   self.tracker.settings.min_confidence)
        return self.tracker.update(detections, probs, frame.timestamp_s, frame.image)

    def analyze(self, frame: Frame) -> list[Face]:
        """One frame through detection, preprocessing, classification (all its faces in one call) and tracking."""
        detections = self.detector.detect(frame.image, frame.timestamp_s)
        probs = self.classifier.predict(self.preprocess(frame.image, detections))
        return self.track(frame, detections, probs)

    def process(self, frame: Frame, fps: float | None, held: list[Face] | None = None,
                draw: bool = True) -> tuple[list[Face], np.ndarray | None]:
        """One frame through every stage, drawing included unless ``draw`` is False (then the picture is None);
        a frame ``--sample-fps`` passes over (not ``frame.analysed``) is drawn with ``held``, the last analysed
        frame's faces, as a viewer expects."""
        faces = self.analyze(frame) if frame.analysed or held is None else held
        return faces, self.annotator.draw(frame.image, faces, fps) if draw else None


def run(frames: Iterable[Frame], pipeline: ExpressionPipeline, sinks: list[Sink],
        should_stop: Callable[[], bool] = lambda: False,
        on_frame: Callable[[RunSummary, float | None], None] | None = None,
        on_end: Callable[[], None] | None = None) -> RunSummary:
    """Process every frame into every sink until the source ends or ``should_stop()`` says so.

    ``on_end`` runs once the source is exhausted (not after a stop), before any sink is closed and
    outside the timing: the window holds its last frame there. Stills get no frame rate to draw.
    """
    summary, rate = RunSummary(still_images=pipeline.still_images), FrameRate()
    draw = any(getattr(sink, "needs_picture", True) for sink in sinks)
    started = time.perf_counter()
    held: list[Face] = []
    try:
        for frame in frames:
            faces, annotated = pipeline.process(frame, None if pipeline.still_images else rate.value, held, draw)
            for sink in sinks:
                sink.consume(frame, faces, annotated)
            # A video's frames --sample-fps never decoded count as read; an unreadable photo does not.
            summary.frames = summary.frames + 1 if pipeline.still_images else frame.index + 1
            if frame.analysed:
                held = faces
                summary.analysed += 1
                summary.faces += len(faces)
                summary.frames_with_faces += bool(faces)
            fps = rate.tick()
            if on_frame is not None:
                on_frame(summary, fps)
            if should_stop():
                return summary
        summary.reached_end = True
    finally:
        summary.seconds = time.perf_counter() - started
    if on_end is not None:
        on_end()
    return summary


class Terminated(Exception):
    """SIGTERM turned into an exception by a front end, so outputs are finalized exactly as on Ctrl-C."""


def terminate_on_sigterm() -> None:
    """For a front end's ``main`` (it owns its process): SIGTERM, as a service manager or ``kill`` sends, raises
    ``Terminated`` in the main thread, so the run stops and finalizes its outputs exactly as on Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@dataclass
class RunOutcome:
    """How a run into sinks ended: ``status`` 0 done, 1 an output failed (``failure``), 130 interrupted."""

    status: int
    summary: RunSummary | None
    failure: OSError | None = None


# Held while outputs are finalized, so a second Ctrl-C cannot cut an MP4 short.
signals_deferred = signals_held


def close_all(sinks: list[Sink]) -> OSError | None:
    """Close every sink even if one fails (a full disk shows up at the last flush), returning the first failure."""
    failure = None
    for sink in sinks:
        try:
            sink.close()
        except OSError as error:
            failure = failure or error
    return failure


def run_to_sinks(frames: Iterable[Frame], pipeline: ExpressionPipeline, sinks: list[Sink],
                 should_stop: Callable[[], bool] = lambda: False,
                 on_frame: Callable[[RunSummary, float | None], None] | None = None,
                 on_end: Callable[[], None] | None = None) -> RunOutcome:
    """Run to the end, a stop, Ctrl-C, SIGTERM (as ``Terminated``) or a write failure; every sink is closed
    (finalized) in all cases, with signals held meanwhile."""
    failure: OSError | None = None
    summary = None
    status = 0
    try:
        summary = run(frames, pipeline, sinks, should_stop, on_frame, on_end)
    except (KeyboardInterrupt, Terminated):
        status = 130
    except OSError as error:
        failure = error
    finally:
        with signals_deferred():
            failure = close_all(sinks) or failure
    if failure is not None:
        return RunOutcome(1, None, failure)
    return RunOutcome(status, summary)
