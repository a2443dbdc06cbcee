"""How the live detector frames RAF-DB's aligned faces once a margin is added around them (``model.sources``).

  python scripts/rafdb_framing.py [--data ../shared/data/rafdb/train] [--every 40] [--pad 0.5]

Every Nth train face gets a margin of ``pad`` image sides (border pixels repeated, as training adds it),
then the live detector (both ranges, as for stills); this prints how many were found and the median
box centre and side in image sides, so the live crop (CropFraming, 1.2 box sides) can be compared with
the aligned image itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.faces import pad_image  # noqa: E402
from model.images import read_image  # noqa: E402
from model.sources import SHARED_DATA, SOURCES  # noqa: E402
from realtime.detector import FaceDetector, largest_face  # noqa: E402
from scripts import run_script  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "rafdb" / "train")
    parser.add_argument("--every", type=int, default=40, help="measure every Nth face (default: %(default)s)")
    parser.add_argument("--pad", type=float, default=SOURCES["rafdb"].pad, help="margin in image sides")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"{args.data} does not exist")
    paths = sorted(args.data.glob("*/*.jpg"))[:: max(args.every, 1)]
    boxes = []
    with FaceDetector(model_range="auto", still_images=True) as detector:
        for path in paths:
            image = read_image(path)
            if image is None:
                continue
            side, margin = image.shape[0], int(round(args.pad * max(image.shape[:2])))
            face = largest_face(detector.detect(pad_image(image, args.pad)))
            if face is not None:
                x, y, w, h = face.box
                boxes.append(((x - margin + w / 2) / side, (y - margin + h / 2) / side, max(w, h) / side))
    found = np.array(boxes)
    print(f"{len(paths)} faces, {len(found)} found ({len(found) / max(len(paths), 1):.0%}), pad {args.pad}")
    if len(found):
        centre_x, centre_y, side = np.median(found, axis=0)
        print(f"median box centre ({centre_x:.3f}, {centre_y:.3f}) and side {side:.3f} image sides; side 5th-95th "
              f"percentile {np.percentile(found[:, 2], 5):.3f}-{np.percentile(found[:, 2], 95):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
