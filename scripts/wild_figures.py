"""How a model reads real faces beyond FER2013: RAF-DB's web faces, KDEF's turned faces, FER2013's crowd figures.

  python scripts/wild_figures.py [--model model/happy_sad_neutral.tflite] [--json]

For ``../shared/data/rafdb/val`` and for ``../shared/data/kdef/val`` by angle (straight; half profile,
left and right; full profile, left and right), each face cut as the live pipeline cuts it (RAF-DB's
aligned faces with a margin added first, as training does: ``model.sources``):
- the decision among happy / sad / neutral (the most probable of the three, no "not sure"): recall per
  class and balanced accuracy, on the faces of those three folders;
- the drawn shares (label at or above the card's ``min_confidence``, else not sure) of each folder,
  the other expressions together as ``other``.
RAF-DB faces the detector misses even with the margin are classified whole (they are counted as
``whole_image``); KDEF photos without a face are counted as ``no_face`` and left out of the figures.
Then the FER2013 val crowd figures of ``scripts/crowd_figures.py``.

Val splits chose nothing here but the training epoch and the temperature; they are not test figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data import class_image_paths  # noqa: E402
from model.faces import CropCache, FaceReport, PhotoFaces  # noqa: E402
from model.images import read_image  # noqa: E402
from model.metrics import balanced_accuracy, confusion_matrix, drawn_counts  # noqa: E402
from model.preprocess import CropFraming, InputSpec, face_to_input  # noqa: E402
from model.sources import SHARED_DATA, SOURCES  # noqa: E402
from realtime.api import DEFAULT_MODEL  # noqa: E402
from realtime.classifier import ExpressionClassifier  # noqa: E402
from realtime.detector import FaceDetector  # noqa: E402
from scripts import run_script  # noqa: E402
from scripts.crowd_figures import crowd_figures  # noqa: E402

DECIDED = ("happy", "sad", "neutral")
FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FACE_CACHE = REPO / "runs" / "face_cache"
KDEF_ANGLE = re.compile(r"^[AB][FM]\d\d[A-Z]{2}(S|HL|HR|FL|FR)$")
ANGLE_GROUPS = {"straight": ("S",), "half profile": ("HL", "HR"), "full profile": ("FL", "FR")}


def face_crops(root: Path, pad: float, whole_when_missed: bool, framing: CropFraming,
               ) -> tuple[list[np.ndarray], list[str], list[Path], int]:
    """Each image's face, cut as training cuts it (the live detector behind the shared crop cache), with its
    folder and path, and how many images had no face (classified whole if ``whole_when_missed``)."""
    photos = PhotoFaces(CropCache(FACE_CACHE, framing, "auto", pad), framing,
                        lambda: FaceDetector(model_range="auto", still_images=True), pad)
    report, crops, folders, paths, missed = FaceReport(), [], [], [], 0
    try:
        for path, index in class_image_paths(root, FOLDERS):
            crop, _ = photos.face(path, report)
            if crop is None:
                missed += 1
                crop = read_image(path) if whole_when_missed else None
                if crop is None:
                    continue
            crops.append(crop)
            folders.append(FOLDERS[index])
            paths.append(path)
    finally:
        photos.close()
    return crops, folders, paths, missed


def _faces(root: Path, pad: float, whole_when_missed: bool, spec: InputSpec, framing: CropFraming,
           ) -> tuple[list, list[str], list[Path], int]:
    """``face_crops`` made into the model's input."""
    crops, folders, paths, missed = face_crops(root, pad, whole_when_missed, framing)
    return [face_to_input(crop, spec) for crop in crops], folders, paths, missed


def _figures(probs: np.ndarray, folders: np.ndarray, classes: list[str], min_confidence: float) -> dict:
    """Recall and balanced accuracy among happy / sad / neutral, and the drawn shares by folder."""
    decided = np.isin(folders, DECIDED)
    columns = [classes.index(name) for name in DECIDED]
    labels = np.array([DECIDED.index(name) for name in folders[decided]], dtype=np.int64)
    choices = probs[decided][:, columns].argmax(axis=1)
    confusion = confusion_matrix(labels, choices, len(DECIDED))
    recall = {name: round(float(row[i] / max(row.sum(), 1)), 4) for i, (name, row) in
              enumerate(zip(DECIDED, confusion))}
    drawn = {}
    for group in (*DECIDED, "other"):
        members = ~decided if group == "other" else folders == group
        counts = drawn_counts(probs[members], classes, min_confidence)
        drawn[group] = {"n": int(members.sum())} | {name: round(count / max(members.sum(), 1), 4)
                                                     for name, count in counts.items()}
    return {"n": int(decided.sum()), "recall": recall, "balanced_accuracy": round(balanced_accuracy(confusion), 4),
            "drawn": drawn}


def rafdb_figures(classifier: ExpressionClassifier, data: Path) -> dict:
    faces, folders, _, missed = _faces(data / "rafdb" / "val", SOURCES["rafdb"].pad, True, classifier.input_spec,
                                       classifier.card.framing)
    probs = classifier.predict(np.stack(faces))
    return {"faces": len(faces), "whole_image": missed} | _figures(
        probs, np.asarray(folders), classifier.classes, classifier.card.min_confidence)


def kdef_figures(classifier: ExpressionClassifier, data: Path) -> dict:
    faces, folders, paths, missed = _faces(data / "kdef" / "val", 0.0, False, classifier.input_spec,
                                           classifier.card.framing)
    probs = classifier.predict(np.stack(faces))
    angles = np.array([KDEF_ANGLE.match(path.stem).group(1) if KDEF_ANGLE.match(path.stem) else "" for path in paths])
    report = {"faces": len(faces), "no_face": missed}
    for group, codes in ANGLE_GROUPS.items():
        members = np.isin(angles, codes)
        report[group] = _figures(probs[members], np.asarray(folders)[members], classifier.classes,
                                 classifier.card.min_confidence)
    return report


def wild_figures(model: Path, data: Path) -> dict:
    classifier = ExpressionClassifier(model)
    return {"model": str(model), "rafdb_val": rafdb_figures(classifier, data),
            "kdef_val": kdef_figures(classifier, data),
            "fer2013_val_crowd": crowd_figures(classifier, data / "fer2013", "val")}


def _line(title: str, figures: dict) -> str:
    recall = ", ".join(f"{name} {value:.3f}" for name, value in figures["recall"].items())
    return f"  {title:<14} n={figures['n']:<5} recall {recall}; balanced {figures['balanced_accuracy']:.3f}"


def _drawn(figures: dict) -> list[str]:
    lines = []
    for folder, shares in figures["drawn"].items():
        drawn = ", ".join(f"{name} {share:.1%}" for name, share in shares.items() if name != "n")
        lines.append(f"      drawn, {folder} folder (n={shares['n']}): {drawn}")
    return lines


def _print(report: dict) -> None:
    raf, kdef, crowd = report["rafdb_val"], report["kdef_val"], report["fer2013_val_crowd"]
    print(f"{report['model']}: happy / sad / neutral decided by the most probable of the three; drawn at the "
          f"card's min_confidence")
    print(f"rafdb/val: {raf['faces']} faces ({raf['whole_image']} classified whole: no face found)")
    print("\n".join([_line("all", raf), *_drawn(raf)]))
    print(f"kdef/val: {kdef['faces']} faces ({kdef['no_face']} photos without a face, left out)")
    for group in ANGLE_GROUPS:
        print("\n".join([_line(group, kdef[group]), *_drawn(kdef[group])]))
    agreement = crowd["drawn_by_agreement"]
    print("fer2013/val crowd: "
          f"6+ neutral drawn sad {agreement['neutral>=6']['sad']:.1%}, happy {agreement['neutral>=6']['happy']:.1%}; "
          f"6+ sad drawn sad {agreement['sad>=6']['sad']:.1%}; 6+ happy drawn happy "
          f"{agreement['happy>=6']['happy']:.1%}; happy vs sad (crowd majority) accuracy "
          f"{crowd['happy_vs_sad_crowd_majority']['accuracy']:.4f}, AUC {crowd['happy_vs_sad_crowd_majority']['roc_auc']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder holding rafdb/, kdef/ and fer2013/")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    for name in ("rafdb", "kdef", "fer2013"):
        if not (args.data / name).is_dir():
            parser.error(f"{args.data / name} does not exist; --data names the folder holding rafdb/, kdef/, fer2013/")
    report = wild_figures(args.model, args.data)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
