"""Accuracy under what real video does to faces: dark, low contrast, blur, noise, JPEG, occlusion, rotation.

  python scripts/corruption_bench.py [--model model/happy_sad_neutral.tflite] [--json]

Each corruption is applied to the val face crops (FER2013 val, read in place) before the one
preprocessing function, exactly where a camera's damage would be. Two scores per corruption, each
with its drop from the clean faces, in points:
- ``own``: the model's decision over its own classes, on the faces whose strict crowd majority
  (FER+ votes) is one of them;
- ``happy_vs_sad``: the decision between happy and sad alone (probabilities renormalized), on the
  faces whose crowd majority is happiness or sadness.
Corruptions are seeded, so every run and every model sees the same damage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.images import read_image  # noqa: E402
from model.preprocess import faces_to_batch, to_gray_uint8  # noqa: E402
from model.votes import load_votes, votes_for  # noqa: E402
from realtime.api import DEFAULT_MODEL  # noqa: E402
from realtime.classifier import ExpressionClassifier  # noqa: E402
from scripts import run_script  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"


def _jpeg(face: np.ndarray, quality: int) -> np.ndarray:
    _, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def _noise(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(face + rng.normal(0.0, 12.0, face.shape), 0, 255).astype(np.uint8)


def _occlude(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat patch over an eighth of the crop, somewhere on the face, as fingers or a cup would cover it."""
    out = face.copy()
    side = face.shape[0]
    height, width = side // 3, side * 3 // 8
    top = int(rng.integers(side // 6, side - height + 1))
    left = int(rng.integers(side // 8, side - side // 8 - width + 1))
    out[top:top + height, left:left + width] = int(rng.integers(60, 200))
    return out


def _rotate(face: np.ndarray, degrees: float) -> np.ndarray:
    side = face.shape[0]
    matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(face, matrix, (side, side), borderMode=cv2.BORDER_REFLECT)


def corruptions(rng: np.random.Generator) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    return {
        "clean": lambda face: face,
        "dark x0.35": lambda face: np.rint(face * 0.35).astype(np.uint8),
        "low contrast x0.3+60": lambda face: np.rint(face * 0.3 + 60).astype(np.uint8),
        "blur 5x5": lambda face: cv2.GaussianBlur(face, (5, 5), 0),
        "noise sigma 12": lambda face: _noise(face, rng),
        "jpeg q15": lambda face: _jpeg(face, 15),
        "occlusion": lambda face: _occlude(face, rng),
        "rotation 20deg": lambda face: _rotate(face, 20.0),
    }


def _crowd_faces(data: Path, split: str, classes: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Gray val faces whose strict crowd majority is one of ``classes``, with that majority as label."""
    votes = load_votes(data)
    faces, labels = [], []
    for path in sorted((data / split).glob("*/*")):
        face_votes = votes_for(votes, data, path)
        majority = face_votes.majority() if face_votes is not None else None
        image = read_image(path) if majority in classes else None
        if image is not None:
            faces.append(to_gray_uint8(image))
            labels.append(classes.index(majority))
    return faces, np.asarray(labels, dtype=np.int64)


def _scores(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    scores = {"own": float((probs.argmax(axis=1) == labels).mean())}
    if {"happy", "sad"} <= set(classes):
        pair_columns = [classes.index("happy"), classes.index("sad")]
        in_pair = np.isin(labels, pair_columns)
        decided = np.asarray(pair_columns)[probs[in_pair][:, pair_columns].argmax(axis=1)]
        scores["happy_vs_sad"] = float((decided == labels[in_pair]).mean())
    return scores


def corruption_report(classifier: ExpressionClassifier, data: Path, split: str, seed: int) -> dict:
    faces, labels = _crowd_faces(data, split, classifier.classes)
    report = {"model": str(classifier.model_path), "faces": len(faces), "results": {}}
    for name, corrupt in corruptions(np.random.default_rng(seed)).items():
        batch = faces_to_batch([corrupt(face) for face in faces], classifier.input_spec)
        report["results"][name] = _scores(classifier.predict(batch), labels, classifier.classes)
    clean = report["results"]["clean"]
    for scores in report["results"].values():
        for key in list(scores):
            scores[f"{key}_drop_points"] = round(100 * (clean[key] - scores[key]), 2)
            scores[key] = round(scores[key], 4)
    report["worst_drop_points"] = {key: max(s[f"{key}_drop_points"] for s in report["results"].values())
                                   for key in clean if not key.endswith("_points")}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    report = corruption_report(ExpressionClassifier(args.model), args.data, args.split, args.seed)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['model']}: {report['faces']} val faces (crowd majority in the model's classes)")
    for name, scores in report["results"].items():
        print(f"  {name:>22}: " + ", ".join(
            f"{key} {scores[key]:.4f} ({0.0 - scores[key + '_drop_points']:+.1f} pt)"
            for key in scores if not key.endswith("_points")))
    print("worst drop: " + ", ".join(f"{k} {v:.1f} points" for k, v in report["worst_drop_points"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
