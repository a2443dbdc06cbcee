"""Should the one preprocessing function equalize a live face? Measured on real photos and real video.

  python scripts/input_parity.py [--model model/happy_sad_neutral.tflite] [--json]

The shared FER2013 crops are all histogram-equalized; a face cut from a camera frame is not. The
model card's ``input.equalize`` says whether ``face_to_input`` equalizes every face (training does
it after augmentation too, by the same function). This runs one exported model twice, with the
card's setting and with it flipped, on what the model is for and never trained on:
- GENKI-4K's development photos (consumer photos of people, smiling or not; faces found and cut by
  the live detector and framing): ROC AUC of P(happy) for smile against non-smile, and the share of
  each folder drawn as each label;
- the clip's two scenes (the speaker, frames 0-210, and the laughing audience in dim light, 211-274),
  through the whole live pipeline: the share of face-frames drawn as each label.
A check only: nothing here is trained on, and the setting is not tuned to these figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.images import read_image  # noqa: E402
from model.metrics import drawn_counts, roc_auc  # noqa: E402
from model.preprocess import CropFraming, crop_face, faces_to_batch  # noqa: E402
from realtime.api import DEFAULT_MODEL, ExpressionDetector  # noqa: E402
from realtime.detector import FaceDetector, largest_face  # noqa: E402
from scripts import run_script  # noqa: E402
from scripts.audience import CLIP, SCENES  # noqa: E402

GENKI = REPO.parent / "shared" / "data" / "genki4k_dev"


def _genki_crops(folder: Path, framing: CropFraming) -> dict[str, list[np.ndarray]]:
    """The largest face of every photo, cut as the live pipeline cuts it for the model (``framing``), by class folder."""
    crops: dict[str, list[np.ndarray]] = {"smile": [], "non_smile": []}
    with FaceDetector("auto", still_images=True) as detector:
        for name, faces in crops.items():
            for path in sorted((folder / name).iterdir()):
                image = read_image(path)
                face = largest_face(detector.detect(image)) if image is not None else None
                if face is not None:
                    faces.append(crop_face(image, face, framing))
    return crops


def _genki_figures(detector: ExpressionDetector, crops: dict[str, list[np.ndarray]]) -> dict:
    classifier = detector.classifier
    probs = {name: classifier.predict(faces_to_batch(faces, classifier.input_spec)) for name, faces in crops.items()}
    happy = classifier.classes.index("happy")
    scores = np.concatenate([probs["smile"][:, happy], probs["non_smile"][:, happy]])
    is_smile = np.concatenate([np.ones(len(probs["smile"]), bool), np.zeros(len(probs["non_smile"]), bool)])
    figures = {"faces": {name: len(faces) for name, faces in crops.items()},
               "auc_happy_smile_vs_non_smile": round(roc_auc(is_smile, scores), 4)}
    for name, folder_probs in probs.items():
        counts = drawn_counts(folder_probs, classifier.classes, classifier.card.min_confidence)
        figures[f"drawn_{name}"] = {label: round(n / max(len(folder_probs), 1), 4) for label, n in counts.items()}
    return figures


def _clip_figures(detector: ExpressionDetector, clip: Path) -> dict:
    counts: dict[str, dict[str, int]] = {name: {} for name in SCENES}
    for result in detector.stream(clip, annotate=False):
        scene = next((name for name, frames in SCENES.items() if result.index in frames), None)
        for face in result.faces if scene else []:
            drawn = "uncertain" if face.uncertain else face.label
            counts[scene][drawn] = counts[scene].get(drawn, 0) + 1
    return {scene: {label: round(n / max(sum(c.values()), 1), 4) for label, n in sorted(c.items())}
            for scene, c in counts.items()}


def parity_report(model: Path, genki: Path, clip: Path) -> dict:
    report = {"model": str(model)}
    with ExpressionDetector(model) as detector:
        crops = _genki_crops(genki, detector.classifier.card.framing)
        trained = detector.classifier.card.input
        for equalize in (trained.equalize, not trained.equalize):
            detector.classifier.card.input = replace(trained, equalize=equalize)
            key = f"equalize={equalize}" + (" (as trained)" if equalize == trained.equalize else "")
            report[key] = {"genki4k_dev": _genki_figures(detector, crops), "clip": _clip_figures(detector, clip)}
        detector.classifier.card.input = trained
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--genki", type=Path, default=GENKI, help="a folder with smile/ and non_smile/ photos")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    report = parity_report(args.model, args.genki, args.clip)
    if args.json:
        print(json.dumps(report))
        return 0
    print(report.pop("model"))
    for setting, figures in report.items():
        genki = figures["genki4k_dev"]
        print(f"{setting}: GENKI-4K dev AUC(happy) smile vs non-smile {genki['auc_happy_smile_vs_non_smile']:.4f} "
              f"on {genki['faces']}")
        for name in ("smile", "non_smile"):
            print(f"  {name:>9} drawn " + ", ".join(f"{k} {v:.1%}" for k, v in genki[f"drawn_{name}"].items()))
        for scene, shares in figures["clip"].items():
            print(f"  {scene}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
