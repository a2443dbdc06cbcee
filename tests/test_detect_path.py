"""The detector-to-crop path loses almost nothing against feeding the training crops directly.

Every val happy and sad crop is upscaled 4x into a larger gray frame, so the live detector has to
find it again; the detected faces, cropped and framed as the live pipeline does, must classify
within 2 points of the crops themselves (by the binary happy/sad model, whose classes are exactly
those folders).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import COMMITTED_MODEL, run_cli


def _last_json(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_detected_and_reframed_faces_classify_like_the_crops(tmp_path: Path, fer_val: Path):
    frames = tmp_path / "frames"
    found = _last_json(run_cli("scripts/detect_set.py", "--crops", str(fer_val), "--out", str(frames)))
    assert found["frames"] == 895 + 653
    assert found["detected_fraction"] >= 0.85
    model = ["--model", str(COMMITTED_MODEL)]
    on_crops = _last_json(run_cli("train.py", "evaluate", "--data", str(fer_val), *model, "--json"))
    detected = _last_json(run_cli("train.py", "evaluate", "--data", str(frames), "--detect", *model, "--json"))
    assert detected["n"] == on_crops["n"]
    assert abs(detected["accuracy_on_detected"] - on_crops["accuracy"]) <= 0.02
