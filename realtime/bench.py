"""Benchmarks that print their figures: ``python -m realtime.bench classifier [--json]``.

``classifier`` times the exported model alone, as the live pipeline calls it (LiteRT, one
interpreter per batch bucket, real val faces when ../shared is present), at batch sizes 1 to 32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from realtime.classifier import ExpressionClassifier

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "model" / "happy_sad.tflite"
VAL_FACES = REPO.parent / "shared" / "data" / "fer2013" / "val"
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def _faces(classifier: ExpressionClassifier, count: int) -> np.ndarray:
    """Real val faces where available (the model's speed does not depend on content, but honesty is cheap)."""
    from model.data import load_class_folders

    if VAL_FACES.is_dir():
        faces = load_class_folders(VAL_FACES, classifier.classes[:2], classifier.input_spec).images
        return faces[np.arange(count) % len(faces)]
    spec = classifier.input_spec
    return np.random.default_rng(0).random((count, spec.size, spec.size, spec.channels), dtype=np.float32)


def bench_classifier(model: Path, threads: int, seconds_per_size: float) -> dict[int, dict[str, float]]:
    """Median milliseconds per batch and per face at each batch size."""
    classifier = ExpressionClassifier(model, num_threads=threads)
    faces = _faces(classifier, max(BATCH_SIZES))
    results = {}
    for size in BATCH_SIZES:
        batch = faces[:size]
        for _ in range(10):
            classifier.predict(batch)
        timings = []
        deadline = time.perf_counter() + seconds_per_size
        while time.perf_counter() < deadline or len(timings) < 20:
            started = time.perf_counter()
            classifier.predict(batch)
            timings.append((time.perf_counter() - started) * 1000.0)
        median = float(np.median(timings))
        results[size] = {"ms_per_batch": round(median, 3), "ms_per_face": round(median / size, 3),
                         "p99_ms_per_batch": round(float(np.percentile(timings, 99)), 3), "runs": len(timings)}
    return results


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}, " \
           f"Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["classifier"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per batch size (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    results = bench_classifier(args.model, args.threads, args.seconds)
    if args.json:
        print(json.dumps({"machine": machine(), "classifier_ms_per_face": {str(k): v["ms_per_face"]
                                                                            for k, v in results.items()},
                          "classifier": {str(k): v for k, v in results.items()}}))
    else:
        print(f"classifier {args.model.name}, LiteRT {args.threads} threads, {machine()}")
        print(f"{'batch':>6} {'ms/batch':>10} {'ms/face':>9} {'p99 ms/batch':>13}")
        for size, row in results.items():
            print(f"{size:>6} {row['ms_per_batch']:>10.3f} {row['ms_per_face']:>9.3f} {row['p99_ms_per_batch']:>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
