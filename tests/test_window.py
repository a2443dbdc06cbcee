"""main.py in a real window on a virtual X display (Xvfb): what the screen shows, and the s/q keys."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.annotator import CLASS_COLOURS, UNCERTAIN_COLOUR
from tests.conftest import REPO

X_TOOLS = ("Xvfb", "xdotool", "xwd")


def _require_x_tools() -> None:
    missing = [tool for tool in X_TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install xvfb xdotool x11-apps)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def display():
    _require_x_tools()
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as announcement:
        number = announcement.readline().strip()
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def _x(display: str, *args: str) -> str:
    result = subprocess.run(args, env={**os.environ, "DISPLAY": display}, capture_output=True, timeout=30)
    return result.stdout.decode(errors="replace") if result.returncode == 0 else ""


def grab_screen(display: str) -> np.ndarray:
    """The whole X screen as a BGR image, decoded from xwd's dump (ZPixmap, least significant byte first)."""
    data = subprocess.run(["xwd", "-root", "-silent"], env={**os.environ, "DISPLAY": display},
                          capture_output=True, check=True, timeout=30).stdout
    header = struct.unpack(">25I", data[:100])
    header_size, width, height = header[0], header[4], header[5]
    bits_per_pixel, bytes_per_line, colormap_entries = header[11], header[12], header[19]
    offset = header_size + 12 * colormap_entries
    rows = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=offset).reshape(height, bytes_per_line)
    pixel_bytes = bits_per_pixel // 8
    return np.ascontiguousarray(rows[:, : width * pixel_bytes].reshape(height, width, pixel_bytes)[:, :, :3])


def _difference(screen: np.ndarray, annotated: np.ndarray) -> float:
    """Mean absolute difference between the annotated frame and the screen's top-left corner (no window manager)."""
    height, width = annotated.shape[:2]
    shown = screen[:height, :width]
    if shown.shape != annotated.shape:
        return float("inf")
    return float(np.abs(shown.astype(np.int16) - annotated).mean())


def _wait_for(condition, seconds: float, interval: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and (not isinstance(value, (list, str)) or value):
            return value
        time.sleep(interval)
    return None


def test_window_shows_the_annotated_frame_and_keys_work(display: str, media: Path, tmp_path: Path):
    shots = tmp_path / "shots"
    process = subprocess.Popen(
        [sys.executable, "main.py", "--source", str(media / "two_people.jpg"), "--screenshot-dir", str(shots)],
        cwd=REPO, env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = _wait_for(lambda: _x(display, "xdotool", "search", "--name", "Expressions").split("\n")[0], 90)
        assert window, "no window appeared"
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "s")
        saved = _wait_for(lambda: list(shots.glob("*.png")), 30)
        assert saved and len(saved) == 1
        annotated = cv2.imread(str(saved[0]))
        screen = _wait_for(lambda: (lambda grab: grab if _difference(grab, annotated) < 8.0 else None)(
            grab_screen(display)), 30)
        assert screen is not None, f"the screen never showed the annotated frame ({_difference(grab_screen(display), annotated):.1f})"
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "q")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, process.stderr.read()[-3000:]
    original = cv2.imread(str(media / "two_people.jpg"))
    shown = screen[: original.shape[0], : original.shape[1]]
    changed = np.abs(shown.astype(np.int16) - original).max(axis=2) > 40
    assert changed.mean() > 0.002, "the window shows the photo without annotations"
    class_colours = np.array([CLASS_COLOURS["happy"], CLASS_COLOURS["sad"], UNCERTAIN_COLOUR], dtype=np.int16)
    label_pixels = (np.abs(shown[:, :, None, :].astype(np.int16) - class_colours).max(axis=3) < 8).any(axis=2)
    assert (label_pixels & changed).sum() > 200, "no box or label in a class (or not-sure) colour on screen"
