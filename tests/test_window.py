"""main.py in a real window on a virtual X display (Xvfb): what the screen shows, and the s/q keys."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.annotator import CLASS_COLOURS, UNCERTAIN_COLOUR
from tests.conftest import REPO, require_tool

X_TOOLS = ("Xvfb", "xdotool", "xwd")


def _require_x_tools() -> None:
    for tool in X_TOOLS:
        require_tool(tool, "apt-get install xvfb xdotool x11-apps")


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


def _window_area(display: str, window: str) -> tuple[int, int, int, int] | None:
    """Where the window lies on the screen, as (x, y, width, height); None until X knows it."""
    output = _x(display, "xdotool", "getwindowgeometry", "--shell", window)
    shell = dict(line.split("=", 1) for line in output.split() if "=" in line)
    try:
        x, y, width, height = (int(shell[key]) for key in ("X", "Y", "WIDTH", "HEIGHT"))
    except KeyError:
        return None
    return (x, y, width, height) if width > 1 and height > 1 else None


def _shown_in_window(screen: np.ndarray, area: tuple[int, int, int, int]) -> np.ndarray:
    """The window's part of the screen: with no window manager the program alone decides where it goes."""
    x, y, width, height = area
    return screen[y:y + height, x:x + width]


def _difference(screen: np.ndarray, annotated: np.ndarray, area: tuple[int, int, int, int]) -> float:
    """Mean absolute difference between the annotated frame and what the window shows of it."""
    return float(np.abs(_shown_in_window(screen, area).astype(np.int16) - annotated).mean())


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
        window = _wait_for(lambda: _x(display, "xdotool", "search", "--onlyvisible", "--name", "Expressions")
                           .split("\n")[0], 90)
        assert window, "no window appeared"
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "s")
        saved = _wait_for(lambda: list(shots.glob("*.png")), 30)
        assert saved and len(saved) == 1
        annotated = cv2.imread(str(saved[0]))
        area = _wait_for(lambda: _window_area(display, window), 30)
        assert area and area[2:] == (annotated.shape[1], annotated.shape[0]), \
            f"the window at {area} is not the {annotated.shape[1]}x{annotated.shape[0]} frame's own size"
        def screen_showing_it():
            grab = grab_screen(display)
            return grab if _difference(grab, annotated, area) < 8.0 else None

        screen = _wait_for(screen_showing_it, 30)
        if screen is None:
            last = grab_screen(display)
            cv2.imwrite(str(tmp_path / "screen.png"), last)
            raise AssertionError(f"the window at {area} never showed the {annotated.shape[1]}x{annotated.shape[0]} "
                                 f"annotated frame (difference {_difference(last, annotated, area):.1f}; the screen "
                                 f"is in {tmp_path / 'screen.png'})")
        _x(display, "xdotool", "windowfocus", "--sync", window, "key", "q")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, process.stderr.read()[-3000:]
    original = cv2.imread(str(media / "two_people.jpg"))
    shown = _shown_in_window(screen, area)
    changed = np.abs(shown.astype(np.int16) - original).max(axis=2) > 40
    assert changed.mean() > 0.002, "the window shows the photo without annotations"
    class_colours = np.array([*CLASS_COLOURS.values(), UNCERTAIN_COLOUR], dtype=np.int16)
    label_pixels = (np.abs(shown[:, :, None, :].astype(np.int16) - class_colours).max(axis=3) < 8).any(axis=2)
    assert (label_pixels & changed).sum() > 200, "no box or label in a class (or not-sure) colour on screen"


def _start(display: str, folder: Path, *args: str) -> subprocess.Popen:
    """main.py in a window, run from ``folder`` (for what it leaves in the current folder)."""
    return subprocess.Popen([sys.executable, str(REPO / "main.py"), *args], cwd=folder,
                            env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _press(display: str, title: str, key: str) -> None:
    window = _wait_for(lambda: _x(display, "xdotool", "search", "--name", title).split("\n")[0], 60)
    assert window, f"no window titled {title!r}"
    _x(display, "xdotool", "windowfocus", "--sync", window, "key", key)


def _finish(process: subprocess.Popen) -> str:
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    return stderr


@pytest.mark.parametrize("fast", [False, True])
def test_a_video_plays_at_its_own_rate_then_holds_its_last_frame(display: str, media: Path, tmp_path: Path,
                                                                   fast: bool):
    """Items 2 and 12: 30 frames at 10 fps take 3 s in the window (--fast: as fast as they are processed); the
    last one stays up until a key; and a run that saved no screenshot leaves no screenshots/ folder."""
    from tests.synth import write_video

    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    frames = [capture.read()[1] for _ in range(30)]
    capture.release()
    video = write_video(tmp_path / "ten_fps.mp4", frames, fps=10.0)
    log = tmp_path / "log.jsonl"
    process = _start(display, tmp_path, "--source", str(video), "--log", str(log), *(["--fast"] if fast else []))
    try:
        assert _wait_for(lambda: _lines(log) >= 1 or None, 90, interval=0.02), "no frame was processed"
        first = time.monotonic()
        assert _wait_for(lambda: _lines(log) == 30 or None, 60, interval=0.02)
        played = time.monotonic() - first
        assert played < 2.0 if fast else played > 2.5, played
        time.sleep(1.0)
        assert process.poll() is None, "the window closed by itself at the end"
        _press(display, "Expressions - ten_fps.mp4", "x")
    finally:
        stderr = _finish(process)
    assert "30 frames" in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["log.jsonl", "ten_fps.mp4"]


def test_quitting_mid_video_is_not_reported_as_a_short_file(display: str, media: Path, tmp_path: Path):
    """Item 3: q after some frames ends the run quietly, without "the file is cut short or damaged"."""
    log = tmp_path / "log.jsonl"
    process = _start(display, tmp_path, "--source", str(media / "short_hamilton_clip.mp4"), "--log", str(log))
    try:
        assert _wait_for(lambda: _lines(log) >= 20 or None, 90, interval=0.05)
        _press(display, "Expressions", "q")
    finally:
        stderr = _finish(process)
    assert _lines(log) < 275
    assert "ended after" not in stderr and "damaged" not in stderr


def test_a_folder_window_is_titled_by_the_photo_shown(display: str, media: Path, tmp_path: Path):
    """Item 8: the title names the photo on screen, not the folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "two_people.jpg"):
        (photos / name).symlink_to(media / name)
    process = _start(display, tmp_path, "--source", str(photos))
    try:
        _press(display, "Expressions - obama.jpg", "n")
        _press(display, "Expressions - two_people.jpg", "n")
    finally:
        stderr = _finish(process)
    assert "2 photos" in stderr
