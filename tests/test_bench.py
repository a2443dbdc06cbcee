"""Smoke test of the benchmark: a tiny run prints one JSON object with every figure present and positive."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

REQUIRED = ("fps", "frame_ms_median", "frame_ms_p99", "stages_ms", "classifier_ms_per_face", "faces_scaling_ms",
            "startup_s", "peak_rss_mb")


def _positive(value) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(_positive(v) for v in value.values())
    return isinstance(value, (int, float)) and value > 0


def test_benchmark_json_has_every_figure(media: Path):
    result = run_cli("-m", "realtime.bench", "--seconds", "0.02", "--repeats", "3", "--warmup", "2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in REQUIRED:
        assert _positive(report[key]), (key, report.get(key))
    assert set(report["classifier_ms_per_face"]) == {"1", "2", "4", "8", "16", "32"}
    assert set(report["faces_scaling_ms"]) == {"1", "2", "4", "8", "16"}
    assert set(report["stages_ms"]) == {"decode", "detect", "preprocess", "classify", "track", "annotate"}


def test_classifier_benchmark_alone(media: Path):
    result = run_cli("-m", "realtime.bench", "classifier", "--seconds", "0.02")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 32:" in result.stdout


def test_soak_mode_reports_memory_files_and_speed(media: Path):
    result = run_cli("-m", "realtime.bench", "soak", "--minutes", "0.1", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    soak = json.loads(result.stdout.strip().splitlines()[-1])["soak"]
    assert soak["passes"] >= 1 and soak["video_minutes"] >= 0.1
    assert soak["rss_mb_end"] > 0 and soak["open_fds"] and soak["fps_min"] > 0
