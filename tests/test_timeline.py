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
