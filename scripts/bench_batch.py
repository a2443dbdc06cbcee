"""Figures for batch.py (issue 15): Ray against main.py run over the same files one after another.

  python scripts/bench_batch.py                  8 videos of about 30 s, 2 workers and 1 worker
  python scripts/bench_batch.py --videos 4 --seconds 10

It writes the videos (short_hamilton_clip.mp4 looped) into a temporary folder, then times, on the same files
with the same options:

- ``main.py --source V --no-display --log V.jsonl`` for each video, one after another;
- ``batch.py`` with ``--workers 2`` and ``--workers 1`` (the second is the cost of the engine itself): wall time,
  Ray's start-up alone (as batch.py reports it), and the ratio to main.py's wall time with the start-up excluded;
- whether every video's JSONL is byte for byte main.py's;
- peak memory (VmHWM) of each worker process that ran videos, of the driver, and of Ray's own processes
  (GCS, raylet, agents), read from /proc every 0.2 s, so Linux only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "media" / "short_hamilton_clip.mp4"
TOTALS = re.compile(r"frames in (?P<processing>[\d.]+) s .*plus (?P<startup>[\d.]+) s of Ray start-up")
RAY_AGENTS = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")
IDLE_WORKER = b"default_worker.py"  # a worker process before Ray titles it (ray::IDLE, then ray::<task>)


def write_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` copies of the clip looped to about ``seconds`` long (re-encoded once, then copied)."""
    capture = cv2.VideoCapture(str(CLIP))
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    first = folder / "session00.mp4"
    writer = cv2.VideoWriter(str(first), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    written, total = 0, round(seconds * fps)
    while written < total:
        while written < total and (read := capture.read())[0]:
            writer.write(read[1])
            written += 1
        capture.release()
        capture = cv2.VideoCapture(str(CLIP))
    capture.release()
    writer.release()
    videos = [first]
    for number in range(1, count):
        videos.append(folder / f"session{number:02d}.mp4")
        shutil.copyfile(first, videos[-1])
    return videos


@dataclass
class Memory:
    """Peak resident memory (MB) per process of a run, by role."""

    driver: float = 0.0
    workers: dict[int, float] = field(default_factory=dict)
    ray: dict[int, float] = field(default_factory=dict)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process, over all its threads (Linux /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(root: int, memory: Memory) -> None:
    """One look at the process tree under the driver: workers are the processes that ran a video; idle workers
    that never did are left out."""
    queue = [root]
    while queue:
        pid = queue.pop()
        queue += child_pids(pid)
        try:
            title, peak = Path(f"/proc/{pid}/cmdline").read_bytes(), _peak_mb(pid)
        except OSError:
            continue
        if pid == root:
            memory.driver = max(memory.driver, peak)
        elif title.startswith(b"ray::process_video") or pid in memory.workers:
            memory.workers[pid] = max(memory.workers.get(pid, 0.0), peak)
            memory.ray.pop(pid, None)
        elif title.startswith(RAY_AGENTS) or not (title.startswith(b"ray::") or IDLE_WORKER in title):
            memory.ray[pid] = max(memory.ray.get(pid, 0.0), peak)


def timed(command: list[str], memory: Memory | None = None) -> tuple[float, str]:
    """Wall seconds of one command and its stdout; with ``memory``, its process tree is sampled meanwhile."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while memory is not None and process.poll() is None:
        sample(process.pid, memory)
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with status {process.returncode}:\n{stderr[-3000:]}")
    return wall, stdout


def run_main(videos: list[Path], logs: Path, options: tuple[str, ...] = ()) -> float:
    """Wall seconds of ``main.py --log`` (with ``options``) over the videos, one process after another."""
    logs.mkdir()
    started = time.perf_counter()
    for video in videos:
        timed([sys.executable, "main.py", "--source", str(video), "--no-display", "--log",
               str(logs / f"{video.name}.jsonl"), *options])
    return time.perf_counter() - started


@dataclass
class BatchRun:
    workers: int
    wall_s: float
    startup_s: float
    processing_s: float
    memory: Memory
    identical: int


def run_batch(videos: list[Path], folder: Path, output: Path, workers: int, main_logs: Path) -> BatchRun:
    memory = Memory()
    wall, stdout = timed([sys.executable, "batch.py", str(folder), str(output), "--workers", str(workers)], memory)
    totals = TOTALS.search(stdout)
    if totals is None:
        sys.exit(f"batch.py printed no totals line: {stdout!r}")
    identical = sum((output / f"{v.name}.jsonl").read_bytes() == (main_logs / f"{v.name}.jsonl").read_bytes()
                    for v in videos)
    return BatchRun(workers, wall, float(totals["startup"]), float(totals["processing"]), memory, identical)


def report(run: BatchRun, main_wall: float, count: int) -> None:
    without_startup = run.wall_s - run.startup_s
    workers = sorted(run.memory.workers.values())
    print(f"batch.py --workers {run.workers}: {run.wall_s:.1f} s wall, of which Ray's start-up {run.startup_s:.1f} s; "
          f"{without_startup:.1f} s without it (videos alone: {run.processing_s:.1f} s)")
    print(f"  ratio to main.py one after another, start-up excluded: {without_startup / main_wall:.2f} "
          f"(videos alone: {run.processing_s / main_wall:.2f})")
    print(f"  JSONL identical to main.py's, byte for byte: {run.identical} of {count} videos")
    print(f"  peak memory: {len(workers)} workers {', '.join(f'{mb:.0f}' for mb in workers)} MB; "
          f"driver {run.memory.driver:.0f} MB; Ray's own {len(run.memory.ray)} processes "
          f"{sum(run.memory.ray.values()):.0f} MB together")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="how many videos (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each video (default: %(default)s)")
    args = parser.parse_args(argv)
    if not CLIP.is_file():
        sys.exit(f"{CLIP} is missing (the benchmark loops the shared clip)")
    print(f"machine: {os.cpu_count()} cores, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as temporary:
        root = Path(temporary)
        (root / "videos").mkdir()
        videos = write_videos(root / "videos", args.videos, args.seconds)
        frames = int(cv2.VideoCapture(str(videos[0])).get(cv2.CAP_PROP_FRAME_COUNT))
        print(f"{len(videos)} videos of {frames} frames ({args.seconds:g} s) each")
        main_wall = run_main(videos, root / "main")
        print(f"main.py one after another: {main_wall:.1f} s ({len(videos) * frames / main_wall:.1f} frames/s)")
        for workers in (2, 1):
            report(run_batch(videos, root / "videos", root / f"batch{workers}", workers, root / "main"),
                   main_wall, len(videos))
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
