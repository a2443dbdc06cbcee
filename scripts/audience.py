"""What the live pipeline draws on the clip's two scenes: the speaker (frames 0-210) and the laughing audience (211-274).

  python scripts/audience.py [--model model/happy_sad_neutral.tflite] [--json]

The audience faces are dim, several in three-quarter or profile view, one with a hand at the face,
and every one of them is laughing or smiling: a hard, honest check of a model on real video. This
is a check only; nothing under ../shared/media is ever trained on. A face-frame counts as drawn
with a label when the window would show that label (smoothed, steady) at or above the model's
``min_confidence``; below it, it counts as ``uncertain``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from realtime.api import DEFAULT_MODEL, ExpressionDetector  # noqa: E402
from scripts import run_script  # noqa: E402

CLIP = REPO.parent / "shared" / "media" / "short_hamilton_clip.mp4"
SCENES = {"speaker (frames 0-210)": range(0, 211), "audience (frames 211-274)": range(211, 275)}


def scene_shares(model: Path, clip: Path) -> dict:
    """Per scene: face-frames, and the share drawn as each label or as not sure."""
    counts = {name: Counter() for name in SCENES}
    with ExpressionDetector(model) as detector:
        for result in detector.stream(clip, annotate=False):
            scene = next((name for name, frames in SCENES.items() if result.index in frames), None)
            for face in result.faces if scene else []:
                counts[scene]["uncertain" if face.uncertain else face.label] += 1
    report = {}
    for name, counter in counts.items():
        total = sum(counter.values())
        report[name] = {"face_frames": total} | {
            label: round(count / max(total, 1), 4) for label, count in sorted(counter.items())}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    report = scene_shares(args.model, args.clip)
    if args.json:
        print(json.dumps(report))
        return 0
    for scene, shares in report.items():
        drawn = ", ".join(f"{label} {share:.1%}" for label, share in shares.items() if label != "face_frames")
        print(f"{scene}: {shares['face_frames']} face-frames; drawn {drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
