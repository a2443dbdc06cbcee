"""main.py as a user runs it: real video decode, real MediaPipe, the committed model, real files out."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.card import DEFAULT_MODEL, ModelCard, card_path_for
from tests.conftest import REPO, run_cli

CLIP_FRAMES = 275


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    count, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, (frame.shape[1], frame.shape[0])
    capture.release()
    return count, size


def _log_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_headless_clip_writes_every_frame_and_finds_the_face(tmp_path: Path, media: Path):
    output, log = tmp_path / "annotated.mp4", tmp_path / "faces.jsonl"
    result = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                     "--output", str(output), "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _count_frames(output) == (CLIP_FRAMES, (640, 360))
    records = _log_records(log)
    assert [r["frame"] for r in records] == list(range(CLIP_FRAMES))
    assert all(set(r) == {"source", "frame", "t", "faces"} for r in records)
    assert {r["source"] for r in records} == {"short_hamilton_clip.mp4"}
    assert records[30]["t"] == pytest.approx(30 / 29.97, abs=1e-3)
    with_face = sum(bool(r["faces"]) for r in records)
    assert with_face >= 0.8 * CLIP_FRAMES
    face = next(f for r in records for f in r["faces"])
    assert set(face) == {"id", "box", "score", "label", "probs", "uncertain", "raw_label", "raw_probs"}
    assert set(face["probs"]) == set(ModelCard.load(card_path_for(DEFAULT_MODEL)).classes)
    assert face["label"] in face["probs"]
    assert abs(sum(face["probs"].values()) - 1.0) < 1e-3
    assert f"{CLIP_FRAMES} frames" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("photo", ["two_people.jpg", "obama_and_biden.jpg"])
def test_photos_give_two_faces_without_a_flag(tmp_path: Path, media: Path, photo: str):
    """Both detector ranges, merged, for stills: the short-range one alone misses both faces of obama_and_biden."""
    log = tmp_path / "faces.jsonl"
    result = run_cli("main.py", "--source", str(media / photo), "--no-display", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = _log_records(log)
    assert len(record["faces"]) == 2


def test_screenshot_is_an_annotated_png(tmp_path: Path, media: Path):
    log = tmp_path / "faces.jsonl"
    result = run_cli("main.py", "--source", str(media / "two_people.jpg"), "--no-display", "--log", str(log),
                     "--screenshot-every", "1", "--screenshot-dir", str(tmp_path / "shots"))
    assert result.returncode == 0, result.stderr[-3000:]
    shot = tmp_path / "shots" / "two_people_000000.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    annotated, original = cv2.imread(str(shot)), cv2.imread(str(media / "two_people.jpg"))
    assert annotated.shape == original.shape
    for face in _log_records(log)[0]["faces"]:
        x, y, w, h = face["box"]
        box_pixels = (slice(max(y - 5, 0), y + h), slice(max(x - 5, 0), x + w))
        changed = np.any(annotated[box_pixels].astype(int) - original[box_pixels] != 0, axis=2)
        assert changed.mean() > 0.01


@pytest.fixture(scope="module")
def long_clip(media: Path, tmp_path_factory) -> Path:
    """The clip six times over (1650 frames, several seconds to process), so a signal always lands mid-run."""
    from tests.synth import write_video

    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", frames * 6, fps=29.97)


def test_ctrl_c_during_recording_leaves_a_playable_file(tmp_path: Path, long_clip: Path):
    output = tmp_path / "partial.mp4"
    process = subprocess.Popen(
        [sys.executable, "main.py", "--source", str(long_clip), "--no-display",
         "--output", str(output), "--log", str(tmp_path / "log.jsonl")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 20):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    frames, size = _count_frames(output)
    assert 20 <= frames < 6 * CLIP_FRAMES and size == (640, 360)


def test_sigterm_during_recording_also_finalizes(tmp_path: Path, long_clip: Path):
    output = tmp_path / "partial.mp4"
    log = tmp_path / "log.jsonl"
    process = subprocess.Popen(
        [sys.executable, "main.py", "--source", str(long_clip), "--no-display",
         "--output", str(output), "--log", str(log)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 10):
        time.sleep(0.05)
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert 10 <= _count_frames(output)[0] < 6 * CLIP_FRAMES


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_bad_inputs_end_with_one_clear_sentence(tmp_path: Path):
    fake_video = tmp_path / "notes.mp4"
    fake_video.write_text("this is not a video")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    bad_model = tmp_path / "model.tflite"
    bad_model.write_bytes(b"\x00" * 100)
    bad_model.with_suffix(".json").write_text((REPO / "model" / "happy_sad.json").read_text())
    cases = {
        "does not exist": ["--source", str(tmp_path / "missing.mp4")],
        "cannot be decoded as a video": ["--source", str(fake_video)],
        "holds no images": ["--source", str(empty_dir)],
        "camera 9 could not be opened": ["--source", "9"],
        "not a usable TFLite model": ["--model", str(bad_model), "--source", str(empty_dir)],
        "model file": ["--model", str(tmp_path / "none.tflite")],
    }
    for expected, args in cases.items():
        lines = _error_lines(run_cli("main.py", "--no-display", *args))
        assert len(lines) == 1 and expected in lines[0], (args, lines)


def test_the_run_time_path_never_imports_tensorflow(media: Path):
    code = (
        "import sys, main\n"
        f"status = main.main(['--source', {str(media / 'two_people.jpg')!r}, '--no-display'])\n"
        "assert status == 0, status\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED []" in result.stdout


def test_another_model_works_through_its_card(tmp_path: Path, media: Path):
    model = REPO / "model" / "happy_sad.tflite"
    log = tmp_path / "faces.jsonl"
    result = run_cli("main.py", "--source", str(media / "two_people.jpg"), "--no-display", "--model", str(model),
                     "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = _log_records(log)
    assert len(record["faces"]) == 2
    for face in record["faces"]:
        assert set(face["probs"]) == {"happy", "sad"}
        assert face["label"] in face["probs"]


def test_bad_numbers_are_refused_with_a_usage_line():
    for option, value in (("--smoothing", "-1"), ("--screenshot-every", "0"), ("--min-confidence", "2"),
                          ("--stall-timeout", "0")):
        result = run_cli("main.py", option, value, "--no-display")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"argument {option}" in result.stderr.splitlines()[-1]
