"""A few ExpressionDetectors, each used by one request at a time, on threads of their own.

Why a pool rather than one detector behind a lock (as the web page has): MediaPipe's detector and
the classifier's LiteRT interpreters must never run two pictures at once, and one lock would leave
the second core idle while a photo is read. Each worker thread takes a whole detector (MediaPipe,
interpreters, annotator) for the whole photo, decoding included, so at most ``workers`` photos are
decoded at once, and requests beyond that wait for a free one in the executor's queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from realtime.api import ExpressionDetector

log = logging.getLogger(__name__)

T = TypeVar("T")


class DetectorPool:
    """``workers`` detectors loaded up front (a bad model or detector fails here, before serving) and as many
    threads; ``run(job)`` hands ``job`` a detector no other thread holds, and waits without blocking the server."""

    def __init__(self, model: Path, detector_range: str, workers: int) -> None:
        self.model = Path(model)
        self.detector_range = detector_range
        self.workers = workers
        self._free: queue.SimpleQueue[ExpressionDetector] = queue.SimpleQueue()
        self._all: list[ExpressionDetector] = []
        try:
            for _ in range(workers):
                self._all.append(self._load())
        except BaseException:
            self._close_detectors()
            raise
        for detector in self._all:
            self._free.put(detector)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detect")
        log.debug("%d detectors ready (%s, detector %s)", workers, self.model.name, detector_range)

    def _load(self) -> ExpressionDetector:
        detector = ExpressionDetector(model=self.model, detector=self.detector_range)
        try:
            # The still-photo pipeline now, not at the first request: MediaPipe loads at start-up, and a
            # detector model that cannot be had is reported before the server answers anything.
            detector.pipeline(still_images=True)
        except BaseException:
            detector.close()
            raise
        return detector

    @property
    def classes(self) -> list[str]:
        return self._all[0].classes

    def _with_detector(self, job: Callable[[ExpressionDetector], T]) -> T:
        # The executor has as many threads as there are detectors, so one is always free here.
        detector = self._free.get()
        try:
            return job(detector)
        finally:
            self._free.put(detector)

    async def run(self, job: Callable[[ExpressionDetector], T]) -> T:
        """``job(detector)`` on a worker thread, awaited; its exception, if any, is raised here."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._with_detector, job)

    def _close_detectors(self) -> None:
        for detector in self._all:
            detector.close()
        self._all = []

    def close(self) -> None:
        """Let running photos finish, drop queued ones, then close MediaPipe (now, not in an exit handler)."""
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._close_detectors()

    def __enter__(self) -> "DetectorPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
