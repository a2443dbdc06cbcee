"""main.py --timeline: one row per second of the real clip, shares that add up, a chart beside it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2

from tests.conftest import run_cli


def test_the_timeline_has_a_row_a_second_and_agrees_with_the_log(tmp_path: Path, media: Path):
    timeline, log = tmp_path / "clip.csv", tmp_path / "clip.jsonl"
    result = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                     "--timeline", str(timeline), "--log", str(log), "--sample-fps", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    with timeline.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["second"]) for row in rows] == list(range(10))  # 275 frames at 29.97/s: 9.2 s
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for row in rows:
        second = [r for r in records if int(r["t"]) == int(row["second"])]
        faces = [face for r in second for face in r["faces"]]
        assert float(row["faces"]) == round(len(faces) / len(second), 2)
        shares = {key[6:]: float(value) for key, value in row.items() if key.startswith("share_")}
        if faces:
            assert abs(sum(shares.values()) - 1.0) < 1e-3
            happy = sum(face["label"] == "happy" and not face["uncertain"] for face in faces) / len(faces)
            assert abs(shares["happy"] - happy) < 1e-3
    chart = cv2.imread(str(timeline.with_suffix(".png")))
    assert chart is not None and chart.shape[1] >= 800
    assert not list(tmp_path.glob(".*part*"))  # nothing half-written left


def test_a_timeline_for_photos_or_not_csv_is_refused(tmp_path: Path, media: Path):
    photo = run_cli("main.py", "--source", str(media / "obama.jpg"), "--json", "--timeline", str(tmp_path / "t.csv"))
    assert photo.returncode == 2 and "photos have no time" in photo.stderr
    wrong = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                    "--timeline", str(tmp_path / "t.txt"))
    assert wrong.returncode == 2 and "must name a .csv file" in wrong.stderr


def _still_video(path: Path, photo: Path, seconds: int, fps: int = 10) -> Path:
    """A video of one photo held still for ``seconds``: a face that shows one expression the whole time."""
    image = cv2.imread(str(photo))
    height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(seconds * fps):
        writer.write(image[:height, :width])
    writer.release()
    return path


def test_a_face_drawn_happy_for_a_whole_second_gives_it_a_happy_share_of_one(tmp_path: Path, media: Path):
    video = _still_video(tmp_path / "smile.mp4", media / "obama.jpg", seconds=2)
    timeline, log = tmp_path / "smile.csv", tmp_path / "smile.jsonl"
    result = run_cli("main.py", "--source", str(video), "--no-display", "--timeline", str(timeline),
                     "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 20
    assert all([face["label"] for face in r["faces"]] == ["happy"] and not r["faces"][0]["uncertain"] for r in records)
    with timeline.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["second"], row["faces"], row["share_happy"], row["share_sad"], row["share_not_sure"])
            for row in rows] == [("0", "1.00", "1.0000", "0.0000", "0.0000"), ("1", "1.00", "1.0000", "0.0000", "0.0000")]


def test_batch_writes_main_pys_timeline_beside_each_log(tmp_path: Path, media: Path):
    inputs = tmp_path / "in"
    (inputs / "day1").mkdir(parents=True)
    (inputs / "day1" / "talk.mp4").write_bytes((media / "short_hamilton_clip.mp4").read_bytes())
    result = run_cli("batch.py", str(inputs), str(tmp_path / "out"), "--timeline", "--sample-fps", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    reference = tmp_path / "main.csv"
    main = run_cli("main.py", "--source", str(inputs / "day1" / "talk.mp4"), "--no-display", "--sample-fps", "5",
                   "--timeline", str(reference))
    assert main.returncode == 0, main.stderr[-3000:]
    timeline = tmp_path / "out" / "day1" / "talk.mp4.timeline.csv"
    assert timeline.read_text() == reference.read_text()
    chart = cv2.imread(str(timeline.with_suffix(".png")))
    assert chart is not None and chart.shape[1] >= 800
    assert sorted(p.name for p in (tmp_path / "out" / "day1").iterdir()) == [
        "talk.mp4.jsonl", "talk.mp4.timeline.csv", "talk.mp4.timeline.png"]
    rerun = run_cli("batch.py", str(inputs), str(tmp_path / "out"), "--timeline", "--sample-fps", "5")
    assert rerun.returncode == 0 and "1 skipped" in rerun.stdout
