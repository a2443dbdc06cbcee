"""Bad input and faults: every failure is one clear sentence and a documented exit status, no traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from realtime.classifier import ExpressionClassifier, ModelError
from tests.conftest import COMMITTED_MODEL, run_cli


def _fails_with(result, expected: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]


def _faces_logged(tmp_path: Path, source: Path, *extra: str) -> list[dict]:
    log = tmp_path / "log.jsonl"
    result = run_cli("main.py", "--source", str(source), "--no-display", "--log", str(log), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_zero_byte_video_is_named_as_empty(tmp_path: Path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _fails_with(run_cli("main.py", "--source", str(empty), "--no-display"), "is empty (0 bytes)")


def test_a_video_cut_mid_stream_is_processed_then_reported(tmp_path: Path):
    video = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for index in range(60):
        writer.write(np.full((240, 320, 3), index * 4, np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: int(video.stat().st_size * 0.6)])
    log = tmp_path / "log.jsonl"
    result = run_cli("main.py", "--source", str(cut), "--no-display", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    frames = len(log.read_text().splitlines())
    assert 10 < frames < 60
    assert f"ended after {frames} of its 60 frames" in result.stderr


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit", "1x1"])
def test_unusual_images_are_read(tmp_path: Path, media: Path, kind: str):
    photo = cv2.imread(str(media / "obama.jpg"))
    image = {
        "gray": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
        "rgba": cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA),
        "16bit": photo.astype(np.uint16) * 257,
        "1x1": photo[:1, :1],
    }[kind]
    path = tmp_path / f"{kind}.png"
    cv2.imwrite(str(path), image)
    (record,) = _faces_logged(tmp_path, path)
    assert len(record["faces"]) == (0 if kind == "1x1" else 1)


def test_an_exif_rotated_photo_is_shown_upright(tmp_path: Path, media: Path):
    upright = Image.open(media / "obama.jpg")
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "sideways.jpg"
    stored_sideways.save(path, exif=exif)
    shots = tmp_path / "shots"
    (record,) = _faces_logged(tmp_path, path, "--screenshot-every", "1", "--screenshot-dir", str(shots))
    assert len(record["faces"]) == 1
    assert cv2.imread(str(next(shots.glob("*.png")))).shape[:2] == (upright.height, upright.width)


def test_a_huge_image_is_downscaled_for_detection(tmp_path: Path, media: Path):
    photo = cv2.imread(str(media / "two_people.jpg"))
    huge = np.full((10000, 10000, 3), 127, np.uint8)
    huge[:661 * 8, :1126 * 8] = cv2.resize(photo, (1126 * 8, 661 * 8))
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), huge)
    (record,) = _faces_logged(tmp_path, path)
    assert len(record["faces"]) == 2
    assert all(face["box"][2] > 500 for face in record["faces"])


@pytest.mark.parametrize("where", ["missing", "read-only"])
def test_an_unwritable_output_fails_before_any_frame(tmp_path: Path, media: Path, where: str):
    folder = tmp_path / "out"
    if where == "read-only":
        folder.mkdir()
        folder.chmod(0o500)
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write into read-only folders")
    output = folder / "annotated.mp4"
    result = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                     "--output", str(output))
    _fails_with(result, "cannot write the output video")
    assert not output.exists()


def test_a_disk_that_fills_up_stops_the_run_cleanly(tmp_path: Path, media: Path):
    result = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                     "--log", "/dev/full")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "no space left" in result.stderr.lower()


def test_models_that_do_not_match_their_card_are_refused(tmp_path: Path):
    card = json.loads(COMMITTED_MODEL.with_suffix(".json").read_text())
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(COMMITTED_MODEL.read_bytes()[:50_000])
    truncated.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a usable TFLite model"):
        ExpressionClassifier(truncated)
    three = tmp_path / "three.tflite"
    shutil.copyfile(COMMITTED_MODEL, three)
    three.with_suffix(".json").write_text(json.dumps({**card, "classes": ["happy", "sad", "neutral"]}))
    with pytest.raises(ModelError, match="card names 3 classes"):
        ExpressionClassifier(three)
    wide = tmp_path / "wide.tflite"
    shutil.copyfile(COMMITTED_MODEL, wide)
    wide.with_suffix(".json").write_text(json.dumps({**card, "input": {**card["input"], "size": 64}}))
    with pytest.raises(ModelError, match="takes inputs of shape"):
        ExpressionClassifier(wide)


def test_more_faces_than_the_largest_batch_are_classified_in_chunks():
    classifier = ExpressionClassifier(COMMITTED_MODEL)
    faces = np.random.default_rng(0).random((75, 48, 48, 1), dtype=np.float32)
    together = classifier.predict(faces)
    one_by_one = np.concatenate([classifier.predict(faces[i : i + 1]) for i in range(len(faces))])
    assert together.shape == (75, 2)
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_a_corrupted_detector_model_in_the_cache_is_fetched_again(tmp_path: Path, media: Path):
    from realtime.detector_model import MODELS

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MODELS["short"].name).write_bytes(b"corrupted")
    result = run_cli("main.py", "--source", str(media / "obama.jpg"), "--no-display",
                     env={"EXPRESSION_DETECTOR_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "does not match its pinned SHA-256" in result.stderr
    assert (cache / MODELS["short"].name).stat().st_size == MODELS["short"].size


def test_a_stream_that_stops_delivering_frames_ends_the_run_and_finalizes_outputs(tmp_path: Path):
    """A named pipe stands in for a camera or network stream: frames arrive, then the sender goes silent."""
    import threading
    import time

    pipe = tmp_path / "stream.mjpeg"
    os.mkfifo(pipe)
    rng = np.random.default_rng(0)
    silent = threading.Event()

    def send_then_fall_silent() -> None:
        with pipe.open("wb") as stream:
            for _ in range(300):
                stream.write(cv2.imencode(".jpg", rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))[1].tobytes())
            stream.flush()
            silent.set()
            time.sleep(30)

    threading.Thread(target=send_then_fall_silent, daemon=True).start()
    output, log = tmp_path / "out.mp4", tmp_path / "log.jsonl"
    started = time.monotonic()
    result = run_cli("main.py", "--source", str(pipe), "--no-display", "--stall-timeout", "2",
                     "--output", str(output), "--log", str(log), timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert silent.is_set() and time.monotonic() - started < 25
    assert "delivered no frame for 2 s" in result.stderr
    frames = len(log.read_text().splitlines())
    capture = cv2.VideoCapture(str(output))
    written = 0
    while capture.read()[0]:
        written += 1
    assert frames >= 1 and written == frames


def test_many_tiny_and_outlying_faces_in_one_frame_are_all_classified(media: Path):
    """36 faces (more than one batch bucket), some tiny and some partly or wholly outside the frame."""
    from realtime.annotator import Annotator
    from realtime.detector import FaceDetector
    from realtime.pipeline import ExpressionPipeline
    from realtime.tracker import FaceTracker
    from realtime.types import Detection, Frame

    frame = cv2.imread(str(media / "two_people.jpg"))
    height, width = frame.shape[:2]
    boxes = [(x, y, 60, 60) for x in range(0, width - 60, 130) for y in range(0, height - 60, 150)][:30]
    boxes += [(5, 5, 8, 8), (width - 12, height - 12, 10, 10), (-40, 100, 80, 80), (width - 30, -30, 90, 90),
              (width + 50, 10, 40, 40), (-200, -200, 50, 50)]
    detections = [Detection(box, 0.9, None, None) for box in boxes]
    classifier = ExpressionClassifier(COMMITTED_MODEL)
    with FaceDetector("short", still_images=True) as detector:
        pipeline = ExpressionPipeline(detector, classifier, FaceTracker(tuple(classifier.classes)), Annotator())
        batch = pipeline.preprocess(frame, detections)
        probs = classifier.predict(batch)
        faces = pipeline.track(Frame(frame, 0, 0.0, "two_people"), detections, probs)
        annotated = pipeline.annotator.draw(frame, faces, None)
    assert batch.shape == (36, 48, 48, 1)
    assert probs.shape == (36, 2) and np.isfinite(probs).all()
    assert len({face.track_id for face in faces}) == 36
    assert annotated.shape == frame.shape
