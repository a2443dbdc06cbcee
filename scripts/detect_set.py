"""Face crops placed into larger frames, so the live detector must find them again; and the framing that fits.

  python scripts/detect_set.py --crops ../shared/data/fer2013/val --out /tmp/val_frames
  python train.py evaluate --data /tmp/val_frames --detect --json

Each crop is upscaled (4x by default) and pasted into a mid-gray frame with margins on every side,
class folders kept, so ``train.py evaluate --detect`` on the result can be compared with plain
``evaluate`` on the crops. Because the crop's square in the frame is known, the same run also
measures how detector boxes sit relative to training crops: the median ratio of crop side to box
side and the median vertical offset of the crop centre, which is what ``CropFraming`` encodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import class_image_paths  # noqa: E402
from model.images import read_image  # noqa: E402
from realtime.detector import FaceDetector, largest_face  # noqa: E402


def place_crop(crop: np.ndarray, upscale: int, margin: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The crop enlarged and centred in a gray frame; returns the frame and the crop square (x, y, side)."""
    side = crop.shape[0] * upscale
    enlarged = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    border = int(side * margin)
    frame = np.full((side + 2 * border, side + 2 * border * 4 // 3, 3), 127, np.uint8)
    left = (frame.shape[1] - side) // 2
    frame[border : border + side, left : left + side] = enlarged
    return frame, (left, border, side)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=Path, required=True, help="DIR/<class>/<crops>")
    parser.add_argument("--out", type=Path, required=True, help="where DIR/<class>/<frames> are written")
    parser.add_argument("--classes", nargs="+", default=["happy", "sad"])
    parser.add_argument("--upscale", type=int, default=4)
    parser.add_argument("--margin", type=float, default=0.5, help="frame border as a fraction of the crop side")
    args = parser.parse_args(argv)

    scales, shifts = [], []
    with FaceDetector("short", still_images=True) as detector:
        for path, label in class_image_paths(args.crops, args.classes):
            crop = read_image(path)
            if crop is None:
                continue
            frame, (left, top, side) = place_crop(crop, args.upscale, args.margin)
            target = args.out / args.classes[label] / (path.stem + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), frame)
            face = largest_face(detector.detect(frame))
            if face is not None:
                x, y, w, h = face.box
                box_side = max(w, h)
                scales.append(side / box_side)
                shifts.append(((top + side / 2) - (y + h / 2)) / side)
    found = len(scales)
    total = sum(1 for _ in class_image_paths(args.crops, args.classes))
    print(json.dumps({
        "frames": total,
        "detected": found,
        "detected_fraction": round(found / max(total, 1), 4),
        "median_crop_scale": round(float(np.median(scales)), 3) if scales else None,
        "median_crop_shift_y": round(float(np.median(shifts)), 3) if shifts else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
