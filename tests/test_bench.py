"""Smoke test of the benchmark: it runs, prints one JSON object, and every figure is there and positive."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_classifier_benchmark_prints_positive_figures():
    result = run_cli("-m", "realtime.bench", "classifier", "--seconds", "0.05", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["classifier_ms_per_face"]) == {"1", "2", "4", "8", "16", "32"}
    assert all(value > 0 for value in report["classifier_ms_per_face"].values())
    assert report["machine"]
