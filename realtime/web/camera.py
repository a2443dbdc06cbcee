"""The visitor's camera: frames arrive over WebRTC (streamlit-webrtc), go through a pipeline of their own
and return annotated, as in the desktop window.

streamlit-webrtc calls ``recv`` on a worker thread of its own and hands it only the newest frame, so
a slow frame drops the ones behind it instead of building a backlog. The browser and the server
reach each other directly: no STUN or TURN server is configured (``NO_ICE_SERVERS``), so nothing
outside the two machines is contacted, which also means the page works across a LAN but not through NAT.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections import deque

import av
from streamlit_webrtc import VideoProcessorBase

from realtime.types import Face, Frame
from realtime.web.service import WebService

NO_ICE_SERVERS = {"iceServers": []}
# The rate under the video is an average over this many frames: WebRTC delivers frames in bursts, so a
# smoothed per-frame rate (the overlay's) reads above the camera's own rate.
RATE_WINDOW_FRAMES = 30
CAMERA_MESSAGES = {
    "start": "Start the camera",
    "stop": "Stop",
    "select_device": "Choose a camera",
    "device_ask_permission": "Allow this page to use your camera in the browser's prompt.",
    "device_access_denied": "The camera was refused: allow this page to use it (the camera icon in the address "
                            "bar), then press Start again",
    "device_not_available": "No camera could be opened: connect one, or close the program using it",
    "media_api_not_available": "This browser gives pages no camera here: open the page as http://localhost or "
                               "over https",
}

# Said under the camera at all times: when the browser refuses the camera, streamlit-webrtc shows the
# browser's own error ("NotAllowedError: Permission denied") and tells the server nothing.
CAMERA_REFUSED_HINT = ('If the camera does not start ("NotAllowedError: Permission denied"), the browser refused '
                       "it: allow this page to use the camera (the camera icon in the address bar), then press "
                       "Start again.")


def release_freed_memory() -> None:
    """Hand the memory a finished stream freed back to the system (glibc only; elsewhere nothing to do).

    glibc keeps what a thread frees in that thread's arena; a stream's decoder, encoder and pipeline
    threads leave tens of MB each behind, so without trimming a long-running server grows with every
    visitor until it plateaus. Measured on 5 streams in a row: 443 MB after them untrimmed, 368 MB trimmed.
    """
    if not sys.platform.startswith("linux"):
        return
    process = ctypes.CDLL(None)  # the symbols already loaded: finding libc by name would run ldconfig or gcc
    if hasattr(process, "malloc_trim"):
        process.malloc_trim(0)


class LiveAnnotator(VideoProcessorBase):
    """One visitor's camera stream through its own VIDEO-mode pipeline: faces keep their ids and labels are
    smoothed exactly as in the desktop window. The pipeline's detector is closed when the stream ends
    (Stop, a closed tab, a lost connection), so no worker outlives its visitor."""

    def __init__(self, service: WebService) -> None:
        self._service = service
        with service.lock:
            self._pipeline = service.detector.pipeline(still_images=False)
        self._index = 0
        self._start: float | None = None
        self._closed = False
        self._processed_at: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)
        self._latest: list[Face] = []
        self._latest_guard = threading.Lock()

    def recv(self, frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="bgr24")
        with self._service.lock:
            if self._closed:
                return frame
            faces, annotated = self._pipeline.process(Frame(image, self._index, self._elapsed(frame), "camera"), None)
        self._index += 1
        with self._latest_guard:
            self._latest = faces
            self._processed_at.append(time.monotonic())
        shown = av.VideoFrame.from_ndarray(annotated, format="bgr24")
        shown.pts, shown.time_base = frame.pts, frame.time_base
        return shown

    def _elapsed(self, frame: av.VideoFrame) -> float:
        """Seconds since the stream's first frame, from the frame's own capture time where it has one."""
        now = frame.time if frame.time is not None else time.monotonic()
        if self._start is None:
            self._start = now
        return now - self._start

    def snapshot(self) -> tuple[list[Face], float | None]:
        """The newest frame's faces and the frames per second processed over the last ``RATE_WINDOW_FRAMES``, for
        the text under the video (None until there are two)."""
        with self._latest_guard:
            times = list(self._processed_at)
            faces = list(self._latest)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return faces, (len(times) - 1) / span if span > 0 else None

    def on_ended(self) -> None:
        with self._service.lock:
            if not self._closed:
                self._closed = True
                self._pipeline.detector.close()
        release_freed_memory()
