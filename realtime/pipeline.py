"""The live loop: source -> detector -> preprocess -> classifier -> tracker -> annotator -> sinks, frame by frame."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np

from model.preprocess import CropFraming, faces_to_batch
from realtime.annotator import Annotator
from realtime.classifier import ExpressionClassifier
from realtime.detector import FaceDetector, crop_face
from realtime.tracker import FaceTracker
from realtime.types import Detection, Face, Frame


class Sink(Protocol):
    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunSummary:
    frames: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    seconds: float = 0.0

    @property
    def mean_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.frames} frames, {self.faces} faces (a face in {self.frames_with_faces} frames), "
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
    """Everything between a decoded frame and its annotated picture."""

    def __init__(self, detector: FaceDetector, classifier: ExpressionClassifier, tracker: FaceTracker,
                 annotator: Annotator, framing: CropFraming = CropFraming(), still_images: bool = False) -> None:
        self.detector = detector
        self.classifier = classifier
        self.tracker = tracker
        self.annotator = annotator
        self.framing = framing
        self.still_images = still_images

    def preprocess(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """Every detected face cut out, levelled and framed like a training crop, as one model batch."""
        crops = [crop_face(image, detection, self.framing) for detection in detections]
        return faces_to_batch(crops, self.classifier.input_spec)

    def track(self, detections: list[Detection], probs: np.ndarray, timestamp_s: float) -> list[Face]:
        """Ids, smoothing and steady labels; unrelated still images share no history."""
        if self.still_images:
            self.tracker.reset()
        return self.tracker.update(detections, probs, timestamp_s)

    def process(self, frame: Frame, fps: float | None) -> tuple[list[Face], np.ndarray]:
        """One frame through every stage; all its faces go to the classifier in a single call."""
        detections = self.detector.detect(frame.image, frame.timestamp_s)
        probs = self.classifier.predict(self.preprocess(frame.image, detections))
        faces = self.track(detections, probs, frame.timestamp_s)
        return faces, self.annotator.draw(frame.image, faces, fps)


def run(frames: Iterable[Frame], pipeline: ExpressionPipeline, sinks: list[Sink],
        should_stop: Callable[[], bool] = lambda: False,
        on_frame: Callable[[RunSummary, float | None], None] | None = None) -> RunSummary:
    """Process every frame into every sink until the source ends or ``should_stop()`` says so."""
    summary, rate = RunSummary(), FrameRate()
    started = time.perf_counter()
    try:
        for frame in frames:
            faces, annotated = pipeline.process(frame, rate.value)
            for sink in sinks:
                sink.consume(frame, faces, annotated)
            summary.frames += 1
            summary.faces += len(faces)
            summary.frames_with_faces += bool(faces)
            fps = rate.tick()
            if on_frame is not None:
                on_frame(summary, fps)
            if should_stop():
                break
    finally:
        summary.seconds = time.perf_counter() - started
    return summary
