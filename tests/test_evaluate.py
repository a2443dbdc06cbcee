"""The ``train.py evaluate`` contract, on crops and (with --detect) on real photos through the live detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import COMMITTED_MODEL, link_subset, run_cli

CONTRACT_KEYS = {"accuracy", "accuracy_on_detected", "balanced_accuracy", "roc_auc", "ece", "n", "n_no_face",
                 "confusion", "classes"}


def _evaluate_json(*args: str) -> dict:
    result = run_cli("train.py", "evaluate", *args, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluate_json_contract_on_crops(tmp_path: Path, fer_val: Path):
    data = link_subset(fer_val, tmp_path, ["happy", "sad", "angry"], 20)
    (tmp_path / "happy" / "readme.txt").write_text("ignored: not an image")
    metrics = _evaluate_json("--data", str(data), "--model", str(COMMITTED_MODEL))
    assert CONTRACT_KEYS <= metrics.keys()
    assert metrics["classes"] == ["happy", "sad"]
    assert metrics["n"] == 40 and metrics["n_no_face"] == 0
    assert np.array(metrics["confusion"]).sum(axis=1).tolist() == [20, 20]
    assert metrics["accuracy"] == metrics["accuracy_on_detected"]
    assert 0.0 <= metrics["ece"] <= 1.0 and 0.0 <= metrics["roc_auc"] <= 1.0


def test_evaluate_prints_a_table_without_json(tmp_path: Path, fer_val: Path):
    data = link_subset(fer_val, tmp_path, ["happy", "sad"], 5)
    result = run_cli("train.py", "evaluate", "--data", str(data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout and "confusion" in result.stdout


def test_evaluate_detect_finds_faces_in_photos_and_counts_misses(tmp_path: Path, media: Path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "sad").mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        (tmp_path / "happy" / name).symlink_to(media / name)
    cv2.imwrite(str(tmp_path / "sad" / "wall.png"), np.full((240, 320, 3), 127, np.uint8))
    metrics = _evaluate_json("--data", str(tmp_path), "--detect")
    assert metrics["n"] == 3 and metrics["n_no_face"] == 1
    assert np.array(metrics["confusion"]).sum() == 2
    assert metrics["accuracy"] <= 2 / 3


def test_evaluate_bad_inputs_end_with_one_clear_sentence(tmp_path: Path):
    missing_model = run_cli("train.py", "evaluate", "--data", str(tmp_path), "--model", str(tmp_path / "none.tflite"))
    not_a_model = tmp_path / "fake.tflite"
    not_a_model.write_text("this is text, not a model")
    not_a_model.with_suffix(".json").write_text(COMMITTED_MODEL.with_suffix(".json").read_text())
    garbage_model = run_cli("train.py", "evaluate", "--data", str(tmp_path), "--model", str(not_a_model))
    missing_data = run_cli("train.py", "evaluate", "--data", str(tmp_path / "nowhere"))
    empty_data = run_cli("train.py", "evaluate", "--data", str(tmp_path))
    for result in (missing_model, garbage_model, missing_data, empty_data):
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stderr
    assert "does not exist" in missing_model.stderr
    assert "not a usable TFLite model" in garbage_model.stderr


def test_every_folder_gets_its_drawn_shares_and_a_bigger_model_is_scored_on_the_folders_classes(
        tmp_path: Path, fer_val: Path):
    data = link_subset(fer_val, tmp_path, ["happy", "sad", "angry"], 15)
    default_model = COMMITTED_MODEL.with_name("happy_sad_neutral.tflite")  # happy, sad, neutral, other
    metrics = _evaluate_json("--data", str(data), "--model", str(default_model))
    assert CONTRACT_KEYS <= metrics.keys()
    assert metrics["classes"] == ["happy", "sad"] and metrics["n"] == 30
    assert np.array(metrics["confusion"]).shape == (2, 2)
    assert metrics["roc_auc"] is not None and 0.0 <= metrics["share_other"] <= 1.0
    assert set(metrics["by_folder"]) == {"happy", "sad", "angry"}
    for shares in metrics["by_folder"].values():
        assert set(shares) == {"happy", "sad", "neutral", "other", "uncertain"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    drawn_happy = metrics["by_folder"]["happy"]["happy"]
    assert drawn_happy <= metrics["accuracy"] or metrics["by_folder"]["happy"]["uncertain"] == 0


def test_by_folder_counts_photos_without_a_face(tmp_path: Path, media: Path):
    (tmp_path / "smile").mkdir()
    (tmp_path / "smile" / "obama.jpg").symlink_to(media / "obama.jpg")
    cv2.imwrite(str(tmp_path / "smile" / "wall.png"), np.full((240, 320, 3), 127, np.uint8))
    metrics = _evaluate_json("--data", str(tmp_path), "--detect")
    assert metrics["classes"] == [] and metrics["accuracy"] is None
    assert metrics["by_folder"]["smile"]["no_face"] == 0.5
    assert metrics["by_folder"]["smile"]["happy"] == 0.5
