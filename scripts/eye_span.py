"""How far apart the detector's two eye keypoints sit on KDEF's photos, angle by angle.

  python scripts/eye_span.py [--data ../shared/data/kdef/train]

Eye levelling rotates each crop so the line between the eyes is level. On a face turned from the
camera the two keypoints crowd together and their line stops being the head's roll: this prints,
per KDEF angle (S straight, HL/HR half, FL/FR full profile), the eye span as a share of the box side
and how far from level the line lies on these upright posed heads. ``model.preprocess.MIN_EYE_SPAN``
is chosen from it.
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
from scripts import run_script  # noqa: E402

KDEF = REPO.parent / "shared" / "data" / "kdef" / "train"
ANGLE = re.compile(r"^[AB][FM]\d\d[A-Z]{2}(S|HL|HR|FL|FR)$")


def measure(root: Path) -> dict[str, dict]:
    """Per angle: photos, faces found, eye span / box side and |eye-line angle| in degrees, one value a face."""
    found: dict[str, dict] = {}
    with FaceDetector(model_range="auto", still_images=True) as detector:
        for path in sorted(root.glob("*/*.jpg")):
            match = ANGLE.match(path.stem)
            image = read_image(path) if match else None
            if image is None:
                continue
            entry = found.setdefault(match.group(1), {"photos": 0, "span": [], "degrees": []})
            entry["photos"] += 1
            face = largest_face(detector.detect(image))
            if face is None or face.right_eye is None or face.left_eye is None:
                continue
            dx, dy = face.left_eye[0] - face.right_eye[0], face.left_eye[1] - face.right_eye[1]
            entry["span"].append(np.hypot(dx, dy) / max(face.box[2:]))
            entry["degrees"].append(abs(np.degrees(np.arctan2(abs(dy), abs(dx)))))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=KDEF, help="KDEF photos in <class>/ folders (default: %(default)s)")
    args = parser.parse_args()
    print("angle  photos  faces  eye span / box side (5th 25th 50th 75th 95th pct)   |line angle| deg (50th 90th)")
    for angle, entry in sorted(measure(args.data).items()):
        span, degrees = np.array(entry["span"]), np.array(entry["degrees"])
        if not len(span):
            print(f"{angle:>5}  {entry['photos']:>6}  {0:>5}")
            continue
        spans = " ".join(f"{v:.3f}" for v in np.percentile(span, [5, 25, 50, 75, 95]))
        lines = " ".join(f"{v:4.1f}" for v in np.percentile(degrees, [50, 90]))
        print(f"{angle:>5}  {entry['photos']:>6}  {len(span):>5}  {spans}                  {lines}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
