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

from realtime.annotator import CLASS_COLOURS
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


def test_window_shows_the_annotated_frame_and_keys_work(display: str, media: Path, tmp_path: Path):
    shots = tmp_path / "shots"
    process = subprocess.Popen(
        [sys.executable, "main.py", "--source", str(media / "two_people.jpg"), "--screenshot-dir", str(shots)],
        cwd=REPO, env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window, screen = "", None
        class_colours = np.array(list(CLASS_COLOURS.values())[:2], dtype=np.int16)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            window = window or _x(display, "xdotool", "search", "--name", "Expressions").split("\n")[0]
            if window:
                screen = grab_screen(display)
                label_pixels = (np.abs(screen[:, :, None, :].astype(np.int16) - class_colours).max(axis=3) < 8).any(2)
                if label_pixels.sum() > 500:
                    break
            time.sleep(0.5)
        assert window and screen is not None, process.stderr.read() if process.poll() is not None else "no window"
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "s")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(shots.glob("*.png")):
            time.sleep(0.2)
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "q")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, process.stderr.read()[-3000:]
    (saved,) = shots.glob("*.png")
    annotated = cv2.imread(str(saved))
    height, width = annotated.shape[:2]
    shown = screen[:height, :width]
    assert shown.shape == annotated.shape
    assert np.abs(shown.astype(np.int16) - annotated).mean() < 8.0
    original = cv2.imread(str(media / "two_people.jpg"))
    assert np.abs(shown.astype(np.int16) - original).max(axis=2).astype(bool).mean() > 0.001
