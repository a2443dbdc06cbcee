"""How an exported model's drawn labels agree with what ten people see, on the FER2013 val faces.

  python scripts/crowd_figures.py [--model model/happy_sad_neutral.tflite] [--json]

The FER+ crowd votes (``ferplus_votes.csv``, ten per face) say what most people see in a face;
FER2013's folders say what one annotator chose. This prints, as the live pipeline would draw them
(label at or above the card's ``min_confidence``, otherwise not sure):
- faces that 6 or more of 10 people call neutral, happy, sad: the share drawn as each label, and
  for each count of votes from 6 to 10 the share drawn as that very label (does the model grow surer
  as the crowd does?);
- faces whose strict crowd majority is another expression (surprise, anger, fear...): the same;
- happy vs sad, deciding between those two alone (probabilities renormalized over them), on the
  faces whose strict crowd majority is happiness or sadness, and on the folder labels:
  accuracy, ROC AUC and ECE;
- the full model over its own classes, on the faces whose strict crowd majority is one of them (for a
  model with an ``other`` class, any expression it does not draw counts as that): accuracy and ECE.

``--sad-bias B`` asks what a bias towards sad would trade: P(sad) is multiplied by e^B and the
probabilities renormalized before anything is drawn or scored (a what-if; no shipped model has one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.images import read_image  # noqa: E402
from model.metrics import drawn_counts, expected_calibration_error, roc_auc  # noqa: E402
from model.preprocess import face_to_input  # noqa: E402
from model.votes import EXPRESSIONS, load_votes, votes_for  # noqa: E402
from realtime.api import DEFAULT_MODEL  # noqa: E402
from realtime.classifier import ExpressionClassifier  # noqa: E402
from scripts import run_script  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"
AGREEMENT = 6  # "6 or more of 10 people"


def _load(data: Path, split: str, classifier: ExpressionClassifier):
    """Every image of the split with its folder name, its votes (or None) and the model's probabilities."""
    votes = load_votes(data)
    paths = sorted(p for p in (data / split).glob("*/*") if p.is_file())
    faces, folders, face_votes = [], [], []
    for path in paths:
        image = read_image(path)
        if image is None:
            continue
        faces.append(face_to_input(image, classifier.input_spec))
        folders.append(path.parent.name)
        face_votes.append(votes_for(votes, data, path))
    return classifier.predict(np.stack(faces)), np.asarray(folders), face_votes


def _shares(probs: np.ndarray, classes: list[str], min_confidence: float) -> dict:
    counts = drawn_counts(probs, classes, min_confidence)
    return {"n": len(probs)} | {name: round(count / max(len(probs), 1), 4) for name, count in counts.items()}


def _drawn_as_voted(probs: np.ndarray, face_votes: list, name: str, classes: list[str],
                    min_confidence: float) -> dict:
    """For each count of ``name`` votes from AGREEMENT to 10: how many faces, and the share drawn ``name``."""
    counts = np.array([v.share(name) if v is not None else -1 for v in face_votes])
    shares = {}
    for votes in range(AGREEMENT, 11):
        group = probs[counts == votes]
        if len(group):
            shares[str(votes)] = {"n": len(group), name: _shares(group, classes, min_confidence)[name]}
    return shares


def _happy_vs_sad(probs: np.ndarray, is_happy: np.ndarray, classes: list[str]) -> dict:
    pair = probs[:, [classes.index("happy"), classes.index("sad")]]
    pair = pair / np.maximum(pair.sum(axis=1, keepdims=True), 1e-12)
    labels = (~is_happy).astype(np.int64)  # 0 happy, 1 sad
    return {"n": int(len(labels)), "accuracy": round(float((pair.argmax(axis=1) == labels).mean()), 4),
            "roc_auc": round(roc_auc(labels == 0, pair[:, 0]), 4),
            "ece": round(expected_calibration_error(labels, pair), 4)}


def _with_bias(probs: np.ndarray, column: int, bias: float) -> np.ndarray:
    """``probs`` with one class's probability scaled by e^bias, renormalized: a bias on that class's logit."""
    biased = probs.copy()
    biased[:, column] *= np.exp(bias)
    return biased / biased.sum(axis=1, keepdims=True)


def crowd_figures(classifier: ExpressionClassifier, data: Path, split: str, sad_bias: float = 0.0) -> dict:
    probs, folders, face_votes = _load(data, split, classifier)
    classes, threshold = classifier.classes, classifier.card.min_confidence
    if sad_bias:
        probs = _with_bias(probs, classes.index("sad"), sad_bias)
    voted = [v for v in face_votes if v is not None]
    agreed = {name: np.array([v is not None and v.share(name) >= AGREEMENT for v in face_votes])
              for name in ("neutral", "happy", "sad")}
    majority = np.array([v.majority() if v is not None else None for v in face_votes], dtype=object)
    report = {"model": str(classifier.model_path), "split": split, "faces": len(probs), "with_votes": len(voted),
              "min_confidence": threshold, "sad_bias": sad_bias}
    report["drawn_by_agreement"] = {f"{name}>={AGREEMENT}": _shares(probs[mask], classes, threshold)
                                    for name, mask in agreed.items()}
    report["drawn_as_voted"] = {name: _drawn_as_voted(probs, face_votes, name, classes, threshold)
                                for name in agreed}
    report["drawn_by_majority"] = {name: _shares(probs[majority == name], classes, threshold)
                                   for name in EXPRESSIONS if (majority == name).any()}
    if {"happy", "sad"} <= set(classes):
        crowd = (majority == "happy") | (majority == "sad")
        folder = (folders == "happy") | (folders == "sad")
        report["happy_vs_sad_crowd_majority"] = _happy_vs_sad(probs[crowd], majority[crowd] == "happy", classes)
        report["happy_vs_sad_folders"] = _happy_vs_sad(probs[folder], folders[folder] == "happy", classes)
    # A model with an "other" class (every expression it does not draw) is judged on those faces too.
    other = classifier.card.training_data.get("other_class")
    judged = np.array([other if other and name is not None and name not in classes else name for name in majority],
                      dtype=object)
    own = np.isin(judged, classes)
    own_labels = np.array([classes.index(name) for name in judged[own]], dtype=np.int64)
    report["own_classes_crowd_majority"] = {
        "n": int(own.sum()), "accuracy": round(float((probs[own].argmax(axis=1) == own_labels).mean()), 4),
        "ece": round(expected_calibration_error(own_labels, probs[own]), 4)}
    return report


def _print(report: dict) -> None:
    print(f"{report['model']} on {report['split']}: {report['faces']} faces, {report['with_votes']} with crowd votes; "
          f"drawn = label at >= {report['min_confidence']}"
          + (f"; P(sad) x e^{report['sad_bias']:g}, renormalized" if report["sad_bias"] else ""))
    for title, key in (("faces that >= 6 of 10 people call ...", "drawn_by_agreement"),
                       ("faces whose strict crowd majority is ...", "drawn_by_majority")):
        print(title)
        for group, shares in report[key].items():
            drawn = ", ".join(f"{name} {share:.1%}" for name, share in shares.items() if name != "n")
            print(f"  {group:>12} (n={shares['n']}): {drawn}")
    print("drawn as the crowd voted, by how many of 10 voted so:")
    for name, by_count in report["drawn_as_voted"].items():
        print(f"  {name:>12}: " + ", ".join(f"{votes} of 10 (n={group['n']}) {group[name]:.1%}"
                                          for votes, group in by_count.items()))
    for key in ("happy_vs_sad_crowd_majority", "happy_vs_sad_folders", "own_classes_crowd_majority"):
        if key in report:
            print(f"{key}: " + ", ".join(f"{name} {value}" for name, value in report[key].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FER2013 folder with ferplus_votes.csv")
    parser.add_argument("--split", default="val")
    parser.add_argument("--sad-bias", type=float, default=0.0, metavar="B",
                        help="what-if: multiply P(sad) by e^B and renormalize before drawing (default: 0, none)")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    classifier = ExpressionClassifier(args.model)
    if args.sad_bias and "sad" not in classifier.classes:
        parser.error(f"--sad-bias needs a model with a sad class; {args.model} has {', '.join(classifier.classes)}")
    report = crowd_figures(classifier, args.data, args.split, args.sad_bias)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
