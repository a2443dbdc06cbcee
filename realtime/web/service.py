"""One ExpressionDetector per server process, shared by every visitor of the page, and the lock that makes that safe."""

from __future__ import annotations

import threading
from pathlib import Path

from realtime.api import DEFAULT_MODEL, ExpressionDetector


class WebService:
    """The model and the still-photo detector behind the page, loaded once for all visitors.

    Why one lock: the classifier's LiteRT interpreters (one per batch size) and the still-photo
    detector are shared by every photo and every camera stream, and an interpreter must not run two
    batches at once. Every call into a pipeline holds ``lock``; a camera frame takes a few
    milliseconds, so a visitor waits at most for one photo or one frame of someone else's.
    """

    def __init__(self, model: Path = DEFAULT_MODEL, detector_range: str = "auto") -> None:
        self.detector = ExpressionDetector(model=model, detector=detector_range)
        # The still-photo detector now rather than at the first photo: a detector model that cannot be had is
        # reported at start-up, and the first visitor does not wait for MediaPipe to load.
        self.detector.pipeline(still_images=True)
        self.lock = threading.Lock()

    @property
    def classes(self) -> list[str]:
        return self.detector.classes

    def close(self) -> None:
        with self.lock:
            self.detector.close()


_service: WebService | None = None
_service_guard = threading.Lock()


def start_service(model: Path = DEFAULT_MODEL, detector_range: str = "auto") -> WebService:
    """Load the model before the first visitor, so a bad model or detector is reported at start-up."""
    global _service
    with _service_guard:
        if _service is None:
            _service = WebService(model, detector_range)
        return _service


def current_service() -> WebService:
    """The process's service; started with the defaults where the page runs without web.py (``streamlit run``)."""
    return _service or start_service()


def stop_service() -> None:
    """Close the detectors when the server stops, so MediaPipe shuts down cleanly instead of in an exit handler."""
    global _service
    with _service_guard:
        if _service is not None:
            _service.close()
            _service = None
