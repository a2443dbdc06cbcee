"""The Python API: one object that finds every face in a picture and reads its expression.

    import cv2
    from realtime import ExpressionDetector

    with ExpressionDetector() as detector:
        faces = detector.detect(cv2.imread("photo.jpg"))
        for face in faces:
            print(face.label, f"{face.confidence:.0%}", face.box)

``detect`` is for single pictures (no tracking); ``stream`` takes what ``main.py --source`` takes and
yields every frame with tracked, smoothed faces; ``run`` sends a stream into sinks (window, video,
log...) and finalizes them however it ends. ``main.py``, ``web.py`` and ``batch.py`` are built on
this object alone, so a script gets exactly what they show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from model.card import DEFAULT_MODEL
from realtime.annotator import Annotator
from realtime.classifier import ExpressionClassifier
from realtime.detector import FaceDetector
from realtime.pipeline import ExpressionPipeline, FrameRate, RunOutcome, RunSummary, Sink, run_to_sinks
from realtime.sampling import sampled
from realtime.sources import open_source
from realtime.tracker import FaceTracker, TrackerSettings
from realtime.types import Face, Frame



@dataclass(frozen=True)
class FrameResult:
    """One frame of a stream: the frame itself, its faces, and the annotated picture (if asked for)."""

    frame: Frame
    faces: list[Face]
    annotated: np.ndarray | None

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def timestamp_s(self) -> float:
        return self.frame.timestamp_s


class ExpressionDetector:
    """Faces and their expressions, from numpy images or any source ``main.py`` accepts.

    Options mirror the command line: ``model`` (a .tflite with its .json card), ``detector`` (``auto``:
    both BlazeFace ranges for stills, short range for video; or ``short``, ``full``, ``both``),
    ``smoothing`` (seconds; 0 for raw per-frame labels), ``min_confidence`` (below it a face is
    ``uncertain``; default: the model card's), ``show_stats`` and ``show_ids`` for drawing.
    Close it (or use ``with``): that closes MediaPipe and restores the process's proxy settings.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, detector: str = "auto", smoothing: float = 0.3,
                 min_confidence: float | None = None, show_stats: bool = False, show_ids: bool = False) -> None:
        self.classifier = ExpressionClassifier(Path(model))
        self.detector_range = detector
        self.settings = TrackerSettings(
            time_constant_s=smoothing,
            switch_margin=TrackerSettings.switch_margin if smoothing > 0 else 0.0,
            min_confidence=self.classifier.card.min_confidence if min_confidence is None else min_confidence)
        self.annotator = Annotator(show_stats=show_stats, show_ids=show_ids)
        self._still_pipeline: ExpressionPipeline | None = None

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    def pipeline(self, still_images: bool) -> ExpressionPipeline:
        """A pipeline for one stream (a fresh VIDEO-mode detector and tracker), or the shared one for stills.

        A stream's pipeline owns its detector: close it with ``pipeline.detector.close()``.
        """
        if still_images and self._still_pipeline is not None:
            return self._still_pipeline
        pipeline = ExpressionPipeline(
            FaceDetector(self.detector_range, still_images=still_images), self.classifier,
            FaceTracker(tuple(self.classes), self.settings), self.annotator, still_images)
        if still_images:
            self._still_pipeline = pipeline
        return pipeline

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face of one BGR (or gray) picture with its label and probabilities; no tracking."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return self.pipeline(still_images=True).analyze(Frame(image, 0, 0.0, "image", is_still=True))

    def annotate(self, image: np.ndarray, faces: list[Face], fps: float | None = None) -> np.ndarray:
        """A copy of ``image`` with every face's box and ``label NN%`` drawn as the desktop window does."""
        return self.annotator.draw(image, faces, fps)

    def stream(self, source, annotate: bool = True, camera_backend: str = "any",
               stall_timeout_s: float = 5.0, sample_fps: float | None = None) -> Iterator[FrameResult]:
        """Every frame of ``source`` (camera index, stream URL, video, image or folder, or an open source),
        with tracking and smoothing; the annotated picture too unless ``annotate`` is False.

        ``sample_fps``: only ``sample_fps`` frames per second of source time are analysed and yielded (the
        others of a video file are not even converted to pixels); tracking and smoothing run on those."""
        opened = open_source(str(source), camera_backend, stall_timeout_s) if isinstance(source, (str, int, Path)) \
            else source
        pipeline = self.pipeline(opened.is_still)
        rate = FrameRate()
        try:
            for frame in sampled(opened, sample_fps, every_frame=False):
                faces = pipeline.analyze(frame)
                fps = None if opened.is_still else rate.value
                picture = self.annotator.draw(frame.image, faces, fps) if annotate else None
                rate.tick()
                yield FrameResult(frame, faces, picture)
        finally:
            if not opened.is_still:
                pipeline.detector.close()
            if opened is not source:
                opened.close()

    def run(self, source, sinks: list[Sink], should_stop: Callable[[], bool] = lambda: False,
            on_frame: Callable[[RunSummary, float | None], None] | None = None, *,
            on_end: Callable[[], None] | None = None, pipeline: ExpressionPipeline | None = None,
            sample_fps: float | None = None, every_frame: bool = True) -> RunOutcome:
        """Send an open source through the pipeline into ``sinks`` and finalize every sink however the run ends
        (end of source, ``should_stop()``, Ctrl-C, ``Terminated``, a failed write).

        ``on_end`` runs when the source is exhausted, before the sinks close (a window holds its last
        frame). ``pipeline``: one made beforehand with ``pipeline(source.is_still)``, so that a detector
        that cannot start fails before any output file is opened; it is closed here like one made here.
        ``sample_fps``: analyse that many frames per second of source time; with ``every_frame`` the others
        still reach the sinks, drawn with the last analysed faces (logs skip them), else they are skipped.
        """
        pipeline = pipeline or self.pipeline(source.is_still)
        try:
            outcome = run_to_sinks(sampled(source, sample_fps, every_frame), pipeline, sinks, should_stop, on_frame,
                                   on_end)
            if outcome.summary is not None and getattr(source, "frames_read", 0) > outcome.summary.frames:
                outcome.summary.frames = source.frames_read  # the frames after the last analysed one, grabbed
            return outcome
        finally:
            if not source.is_still:
                pipeline.detector.close()

    def close(self) -> None:
        if self._still_pipeline is not None:
            self._still_pipeline.detector.close()
            self._still_pipeline = None

    def __enter__(self) -> "ExpressionDetector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
