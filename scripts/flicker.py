"""Label switches per track per minute in a main.py JSONL log: drawn (smoothed) against raw per-frame labels.

  python main.py --source ../shared/media/short_hamilton_clip.mp4 --no-display --log /tmp/clip.jsonl
  python scripts/flicker.py /tmp/clip.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def switch_rates(records: list[dict]) -> dict[str, float]:
    """Switches per track-minute of the drawn and the raw labels, over every track in the log."""
    history: dict[int, list[tuple[float, str, str]]] = defaultdict(list)
    for record in records:
        for face in record["faces"]:
            history[face["id"]].append((record["t"], face["label"], face["raw_label"]))
    drawn = raw = 0
    seconds = 0.0
    for samples in history.values():
        seconds += samples[-1][0] - samples[0][0]
        drawn += sum(a[1] != b[1] for a, b in zip(samples, samples[1:]))
        raw += sum(a[2] != b[2] for a, b in zip(samples, samples[1:]))
    minutes = max(seconds / 60.0, 1e-9)
    return {"tracks": len(history), "track_minutes": round(seconds / 60.0, 3),
            "raw_switches_per_track_minute": round(raw / minutes, 2),
            "drawn_switches_per_track_minute": round(drawn / minutes, 2),
            "raw_switches": raw, "drawn_switches": drawn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path)
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    print(json.dumps(switch_rates(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
