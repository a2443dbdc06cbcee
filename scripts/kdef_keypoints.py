"""Where the detector's keypoints sit on KDEF's photos, angle by angle: eye span, eye line, inner-face centre.

  python scripts/kdef_keypoints.py [--data ../shared/data/kdef/train]

Per KDEF angle (S straight, HL/HR half, FL/FR full profile), over the largest face of each photo:
- the eye span as a share of the box side, and how far from level the eye line lies on these upright
  posed heads. Eye levelling rotates each crop by that line; on a face turned from the camera the two
  keypoints crowd together and the line stops being the head's roll. ``model.preprocess.MIN_EYE_SPAN``
  is chosen from it.
- where the inner face (the mean of the eyes, nose tip and mouth centre) lies against the box centre,
  in box sides, x to the right of the picture and y down. The live crop is centred on the box, so this
  says how far off-centre a turned face's eyes, nose and mouth sit in its crop.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.images import read_image  # noqa: E402
from realtime.detector import FaceDetector, largest_face  # noqa: E402
from realtime.types import Detection  # noqa: E402
from scripts import run_script  # noqa: E402

KDEF = REPO.parent / "shared" / "data" / "kdef" / "train"
ANGLE = re.compile(r"^[AB][FM]\d\d[A-Z]{2}(S|HL|HR|FL|FR)$")
PERCENTILES = (5, 25, 50, 75, 95)


def inner_face_offset(face: Detection) -> tuple[float, float] | None:
    """The mean of the eyes, nose tip and mouth centre less the box centre, in box sides (None: a keypoint missing)."""
    points = (face.right_eye, face.left_eye, face.nose, face.mouth)
    if any(point is None for point in points):
        return None
    x, y, w, h = face.box
    centre = np.mean(np.array(points, dtype=np.float64), axis=0)
    return (centre[0] - (x + w / 2.0)) / max(w, h), (centre[1] - (y + h / 2.0)) / max(w, h)


def measure(root: Path) -> dict[str, dict]:
    """Per angle: photos, and one value a face of eye span / box side, |eye-line angle| in degrees and inner-face offset."""
    found: dict[str, dict] = {}
    with FaceDetector(model_range="auto", still_images=True) as detector:
        for path in sorted(root.glob("*/*.jpg")):
            match = ANGLE.match(path.stem)
            image = read_image(path) if match else None
            if image is None:
                continue
            entry = found.setdefault(match.group(1), {"photos": 0, "span": [], "degrees": [], "offset": []})
            entry["photos"] += 1
            face = largest_face(detector.detect(image))
            if face is None or face.right_eye is None or face.left_eye is None:
                continue
            dx, dy = face.left_eye[0] - face.right_eye[0], face.left_eye[1] - face.right_eye[1]
            entry["span"].append(np.hypot(dx, dy) / max(face.box[2:]))
            entry["degrees"].append(abs(np.degrees(np.arctan2(abs(dy), abs(dx)))))
            offset = inner_face_offset(face)
            if offset is not None:
                entry["offset"].append(offset)
    return found


def _percentiles(values: np.ndarray) -> str:
    return " ".join(f"{v:6.3f}" for v in np.percentile(values, PERCENTILES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=KDEF, help="KDEF photos in <class>/ folders (default: %(default)s)")
    args = parser.parse_args()
    found = sorted(measure(args.data).items())
    pct = " ".join(f"{p}th" for p in PERCENTILES)
    print(f"angle  photos  faces  eye span / box side ({pct} pct)   |line angle| deg (50th 90th)")
    for angle, entry in found:
        span, degrees = np.array(entry["span"]), np.array(entry["degrees"])
        if not len(span):
            print(f"{angle:>5}  {entry['photos']:>6}  {0:>5}")
            continue
        lines = " ".join(f"{v:4.1f}" for v in np.percentile(degrees, [50, 90]))
        print(f"{angle:>5}  {entry['photos']:>6}  {len(span):>5}  {_percentiles(span)}   {lines}")
    print(f"\nangle  faces  inner-face centre less box centre, in box sides: x ({pct} pct) | y ({pct} pct)")
    for angle, entry in found:
        offset = np.array(entry["offset"]).reshape(-1, 2)
        if len(offset):
            print(f"{angle:>5}  {len(offset):>5}  {_percentiles(offset[:, 0])} | {_percentiles(offset[:, 1])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
