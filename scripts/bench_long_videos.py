"""Figures for long videos (issue 21): seconds of video analysed per second of wall time, full rate and sampled.

  python scripts/bench_long_videos.py                       4 one-minute 640x360 H.264 videos
  python scripts/bench_long_videos.py --videos 2 --seconds 20
  python scripts/bench_long_videos.py --videos 60 --batch-only     an hour of video, batch.py alone

It writes the videos (short_hamilton_clip.mp4 looped, encoded once with libx264's defaults: B-frames, a
keyframe every 250 frames, as most encoders write them) into a temporary folder, then times on those files:

- ``main.py --source V --no-display --log V.jsonl`` for each video, one after another, at full rate and with
  ``--sample-fps 10``: wall time of the processes, start-up included;
- ``batch.py --workers 2`` over the folder, at full rate and with ``--sample-fps 10``: wall time, Ray's start-up
  alone (as batch.py reports it), the rate with the start-up excluded, and the rate of the processing alone
  (batch.py's own figure: from the first video sent to the last result), and the rest of the wall time (the
  process's imports, its checks and Ray's shut-down: fixed costs that an hour of video pays once);
- whether every batch log is byte for byte main.py's at the same rate;
- ``main.py`` on the shared clip at full rate and with ``--sample-fps 10``, one after the other: the records, their
  spacing, and the time ratio;
- what skipping the decoding of non-reference frames would save: CPU seconds to decode one video with OpenCV
  (``grab``, as unsampled frames are), with PyAV, and with PyAV told to skip them (``skip_frame = "NONREF"``).

The machine should be otherwise idle: the figures are wall times on its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_batch import CLIP, TOTALS, run_main, timed  # noqa: E402

SAMPLE_FPS = 10.0


def write_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` copies of the clip looped to ``seconds``, as H.264 (libx264's default settings)."""
    with av.open(str(CLIP)) as source:
        rate = source.streams.video[0].average_rate or Fraction(30)
        pictures = [frame.to_ndarray(format="bgr24") for frame in source.decode(video=0)]
    first = folder / "talk00.mp4"
    with av.open(str(first), "w") as output:
        stream = output.add_stream("libx264", rate=rate)
        stream.height, stream.width = pictures[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * rate)):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pictures[index % len(pictures)], format="bgr24")))
        output.mux(stream.encode())
    videos = [first]
    for number in range(1, count):
        videos.append(folder / f"talk{number:02d}.mp4")
        shutil.copyfile(first, videos[-1])
    return videos


def rate_options(sample_fps: float | None) -> list[str]:
    return [] if sample_fps is None else ["--sample-fps", f"{sample_fps:g}"]


def run_batch(folder: Path, output: Path, sample_fps: float | None) -> tuple[float, float, float]:
    """Wall seconds of batch.py --workers 2 over the folder, Ray's start-up within them, and the processing."""
    wall, stdout = timed([sys.executable, "batch.py", str(folder), str(output), "--workers", "2",
                          *rate_options(sample_fps)])
    totals = TOTALS.search(stdout)
    if totals is None:
        sys.exit(f"batch.py printed no totals line: {stdout!r}")
    return wall, float(totals["startup"]), float(totals["processing"])


def identical_logs(videos: list[Path], batch: Path, main: Path) -> int:
    return sum((batch / f"{v.name}.jsonl").read_bytes() == (main / f"{v.name}.jsonl").read_bytes() for v in videos)


def clip_check(folder: Path) -> None:
    """The issue's clip figure: records at --sample-fps 10, their spacing, and the time against full rate."""
    walls, records = {}, {}
    for name, sample_fps in (("full", None), ("sampled", SAMPLE_FPS)):
        log = folder / f"clip_{name}.jsonl"
        walls[name], _ = timed([sys.executable, "main.py", "--source", str(CLIP), "--no-display", "--log", str(log),
                                *rate_options(sample_fps)])
        records[name] = [json.loads(line)["t"] for line in log.read_text().splitlines()]
    gaps = [b - a for a, b in zip(records["sampled"], records["sampled"][1:])]
    print(f"| clip, main.py full rate | {len(records['full'])} records in {walls['full']:.2f} s wall |")
    print(f"| clip, main.py --sample-fps 10 | {len(records['sampled'])} records, {min(gaps):.3f}-{max(gaps):.3f} s "
          f"apart, in {walls['sampled']:.2f} s wall: **{walls['sampled'] / walls['full']:.2f}** of full rate |")


def decoder_check(video: Path) -> None:
    """CPU seconds to decode every frame (one thread), and how many frames PyAV decodes skipping non-reference ones."""
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    started, grabbed = time.process_time(), 0
    while capture.grab():
        grabbed += 1
    print(f"| decoding one video, OpenCV grab | {grabbed} frames in {time.process_time() - started:.2f} s of CPU |")
    capture.release()
    for skip in ("DEFAULT", "NONREF"):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            stream.codec_context.skip_frame = skip
            started = time.process_time()
            decoded = sum(1 for _ in container.decode(stream))
        print(f"| decoding one video, PyAV skip_frame={skip} | {decoded} frames in "
              f"{time.process_time() - started:.2f} s of CPU |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="how many videos (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each video (default: %(default)s)")
    parser.add_argument("--batch-only", action="store_true",
                        help="time batch.py alone (no main.py runs to compare logs with, no clip or decoder rows)")
    args = parser.parse_args(argv)
    if not CLIP.is_file():
        sys.exit(f"{CLIP} is missing (the benchmark loops the shared clip)")
    print(f"machine: {os.cpu_count()} cores, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench_long_") as temporary:
        root = Path(temporary)
        (root / "videos").mkdir()
        videos = write_videos(root / "videos", args.videos, args.seconds)
        video_s = args.videos * args.seconds
        print(f"{args.videos} H.264 videos of {args.seconds:g} s, 640x360: {video_s:g} s of video\n")
        print("| run | wall | seconds of video per wall second |\n|---|---|---|")
        for name, sample_fps in (("full rate", None), ("--sample-fps 10", SAMPLE_FPS)):
            tag = "full" if sample_fps is None else "sampled"
            if not args.batch_only:
                main_wall = run_main(videos, root / f"main_{tag}", tuple(rate_options(sample_fps)))
                print(f"| main.py {name}, one video after another | {main_wall:.1f} s | {video_s / main_wall:.1f} |")
            wall, startup, processing = run_batch(root / "videos", root / f"batch_{tag}", sample_fps)
            same = ""
            if not args.batch_only:
                identical = identical_logs(videos, root / f"batch_{tag}", root / f"main_{tag}")
                same = f"; logs identical to main.py's: {identical} of {len(videos)}"
            print(f"| batch.py --workers 2 {name} | {wall:.1f} s: Ray's start-up {startup:.1f} s, the processing "
                  f"{processing:.1f} s, the rest (imports, checks, Ray's shut-down) {wall - startup - processing:.1f} s "
                  f"| **{video_s / (wall - startup):.1f}** without the start-up ({video_s / wall:.1f} with it, "
                  f"{video_s / processing:.1f} in the processing){same} |")
        if not args.batch_only:
            clip_check(root)
            decoder_check(videos[0])
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
