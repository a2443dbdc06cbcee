"""Guards around the native libraries (LiteRT, MediaPipe, OpenCV, FFmpeg): their console chatter, and signals.

Chatter: LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate``, MediaPipe's absl ``W0000 ... not
aligned``, 46 ``Sparsity tensors`` lines for the full-range model, OpenCV's ``[ WARN ...]`` and FFmpeg's
``moov atom not found`` are written straight to file descriptor 2 by C++ code. Measured for issue 12:
``TF_CPP_MIN_LOG_LEVEL``, ``GLOG_minloglevel`` and ``ABSL_MIN_LOG_LEVEL`` silence none of them. So the
few calls that print (creating an interpreter or a detector, a detector's first frame, closing it,
opening a capture) run with descriptor 2 pointed at the null device, put back as soon as they return.
``show_native_output(True)`` (``main.py --verbose``) lets them through. While a call runs quietly,
whatever another thread writes to stderr is lost too; the calls are short and happen at start-up
and shut-down, not per frame.

Signals: a Ctrl-C that lands inside MediaPipe's Python wrappers can leave a half-built
``mediapipe.Image`` whose ``__del__`` prints a traceback at interpreter exit; ``signals_held`` makes
SIGINT and SIGTERM wait until the call has returned (and outputs wait for finalizing, in the pipeline).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

_lock = threading.Lock()
_quiet_depth = 0
_saved_stderr_fd: int | None = None
_visible = False
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def show_native_output(visible: bool) -> None:
    """Let the native libraries' own messages reach stderr (for debugging), or keep them off (the default)."""
    global _visible
    _visible = visible


def quiet_ffmpeg_decoder() -> None:
    """Keep FFmpeg's per-frame complaints about a damaged video (``[h264 @ 0x...] Invalid NAL unit size``)
    off stderr for the rest of the process: a front end's choice, called before the first video is opened.

    These come from decoding, frame after frame, so ``quiet_native`` cannot wrap them. OpenCV sets FFmpeg's
    log level from ``OPENCV_FFMPEG_LOGLEVEL`` once, when its FFmpeg backend first starts; -8 is FFmpeg's
    "quiet". A value the user set is kept. The pipeline itself still says, in one line, that a file ended early.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _redirect_stderr_fd() -> int | None:
    """Point descriptor 2 at the null device; the saved original, or None where that is not possible."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        return None
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
    finally:
        os.close(null)
    return saved


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Keep native libraries' messages off stderr for the duration (nested and threaded uses share one redirect)."""
    global _quiet_depth, _saved_stderr_fd
    if _visible:
        yield
        return
    with _lock:
        if _quiet_depth == 0:
            _saved_stderr_fd = _redirect_stderr_fd()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_stderr_fd is not None:
                os.dup2(_saved_stderr_fd, 2)
                os.close(_saved_stderr_fd)
                _saved_stderr_fd = None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the duration; one that arrives meanwhile is raised again right after.

    Blocking the signals with ``pthread_sigmask`` is not enough: it masks the calling thread only, and
    the kernel hands a process-wide Ctrl-C to any thread that does not mask it (MediaPipe's and
    XNNPACK's workers, the camera reader), after which Python raises ``KeyboardInterrupt`` in the main
    thread all the same. So the Python-level handlers are swapped for one that takes note. Only the
    main thread can do that; elsewhere the body simply runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    # A handler installed by C code reads as None and cannot be put back from Python, so it stays.
    previous = {number: handler for number in HELD_SIGNALS if (handler := signal.getsignal(number)) is not None}
    for number in previous:
        signal.signal(number, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)

