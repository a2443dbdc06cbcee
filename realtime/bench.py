"""Benchmarks that print their figures: ``python -m realtime.bench [--json]``.

Everything is measured on this machine, in one run, on real media from ../shared/media:

- end to end on short_hamilton_clip.mp4, headless: decode -> detect -> preprocess -> classify ->
  track -> annotate per frame (no window, no encoding), after a warm-up; frames/s, median and p99 ms per
  frame, and the median and p95 of each stage;
- the classifier alone at batch 1 to 32 (ms per batch and per face);
- frames holding 1, 2, 4, 8 and 16 real faces tiled into 1280x720 (full-range detector, since
  tiles that small are beyond the short-range model), end-to-end ms per frame;
- start-up: seconds from launching ``main.py`` as a separate process to its first annotated frame,
  and that process's peak memory (RSS) over the whole clip.
``python -m realtime.bench classifier`` runs the classifier part alone; ``python -m realtime.bench soak
--minutes 10`` loops the clip through the whole pipeline (with a JSONL log, as a long session would)
and reports memory, open files and speed per pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from model.card import DEFAULT_MODEL
from model.errors import ExpressionDetectorError
from realtime.annotator import Annotator
from realtime.classifier import ExpressionClassifier
from realtime.detector import FaceDetector
from realtime.pipeline import ExpressionPipeline
from realtime.sources import VideoFileSource
from realtime.tracker import FaceTracker

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIP = MEDIA / "short_hamilton_clip.mp4"
PHOTOS = ("two_people.jpg", "obama.jpg", "biden.jpg", "kit_with_rose.jpg", "obama_and_biden.jpg")
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
FACE_COUNTS = (1, 2, 4, 8, 16)
STAGES = ("decode", "detect", "preprocess", "classify", "track", "annotate")


class BenchError(ExpressionDetectorError):
    """Media the benchmark needs is missing."""


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _summary(values: list[float], *quantiles: int) -> dict[str, float]:
    return {f"p{q}" if q != 50 else "median": round(float(np.percentile(values, q)), 3) for q in quantiles}


def bench_classifier(classifier: ExpressionClassifier, faces: np.ndarray, seconds_per_size: float) -> dict:
    """Median milliseconds per batch and per face at each batch size."""
    results = {}
    for size in BATCH_SIZES:
        batch = faces[np.arange(size) % len(faces)]
        for _ in range(10):
            classifier.predict(batch)
        timings = []
        deadline = time.perf_counter() + seconds_per_size
        while time.perf_counter() < deadline or len(timings) < 20:
            started = time.perf_counter()
            classifier.predict(batch)
            timings.append(_ms(time.perf_counter() - started))
        median = float(np.median(timings))
        results[size] = {"ms_per_batch": round(median, 3), "ms_per_face": round(median / size, 4)}
    return results


def _pipeline(detector: FaceDetector, classifier: ExpressionClassifier) -> ExpressionPipeline:
    return ExpressionPipeline(detector, classifier, FaceTracker(tuple(classifier.classes)), Annotator())


def _timed_frames(pipeline: ExpressionPipeline, frames, warmup: int) -> tuple[list[float], dict[str, list[float]], int]:
    """Per-frame total ms and per-stage ms, each stage timed around the very calls the pipeline makes."""
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    faces_seen = 0
    iterator = iter(frames)
    index = 0
    while True:
        t0 = time.perf_counter()
        frame = next(iterator, None)
        if frame is None:
            break
        t1 = time.perf_counter()
        detections = pipeline.detector.detect(frame.image, frame.timestamp_s)
        t2 = time.perf_counter()
        batch = pipeline.preprocess(frame.image, detections)
        t3 = time.perf_counter()
        probs = pipeline.classifier.predict(batch)
        t4 = time.perf_counter()
        faces = pipeline.track(frame, detections, probs)
        t5 = time.perf_counter()
        pipeline.annotator.draw(frame.image, faces, 0.0)
        t6 = time.perf_counter()
        if index >= warmup:
            totals.append(_ms(t6 - t0))
            for name, start, end in zip(STAGES, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
                stages[name].append(_ms(end - start))
            faces_seen += len(faces)
        index += 1
    return totals, stages, faces_seen


def bench_clip(classifier: ExpressionClassifier, warmup: int) -> dict:
    source = VideoFileSource(CLIP)
    try:
        with FaceDetector("short") as detector:
            pipeline = _pipeline(detector, classifier)
            totals, stages, faces = _timed_frames(pipeline, source, warmup)
    finally:
        source.close()
    return {
        "frames": len(totals),
        "faces": faces,
        "fps": round(1000.0 * len(totals) / sum(totals), 1),
        "frame_ms_median": round(float(np.median(totals)), 3),
        "frame_ms_p99": round(float(np.percentile(totals, 99)), 3),
        "stages": {name: _summary(values, 50, 95) for name, values in stages.items()},
    }


def face_tiles() -> list[np.ndarray]:
    """Square cut-outs of every face in the media photos, found with the full-range detector."""
    tiles = []
    with FaceDetector("full", still_images=True) as detector:
        for name in PHOTOS:
            image = cv2.imread(str(MEDIA / name))
            for detection in detector.detect(image):
                x, y, w, h = detection.box
                side = int(max(w, h) * 1.5)
                left, top = int(x + w / 2 - side / 2), int(y + h / 2 - side / 2)
                padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
                tiles.append(padded[top + side : top + 2 * side, left + side : left + 2 * side])
    return tiles


def tiled_frame(tiles: list[np.ndarray], count: int) -> np.ndarray:
    """A 1280x720 frame with ``count`` faces on a 4x4 grid (mirrored copies once the photos run out)."""
    frame = np.full((720, 1280, 3), 90, np.uint8)
    for index in range(count):
        row, col = divmod(index, 4)
        tile = cv2.resize(tiles[index % len(tiles)], (180, 180), interpolation=cv2.INTER_AREA)
        if index >= len(tiles):
            tile = cv2.flip(tile, 1)
        frame[row * 180 : (row + 1) * 180, col * 320 + 70 : col * 320 + 250] = tile
    return frame


def bench_face_scaling(classifier: ExpressionClassifier, repeats: int) -> dict:
    from realtime.types import Frame

    tiles = face_tiles()
    results = {}
    with FaceDetector("full") as detector:
        pipeline = _pipeline(detector, classifier)
        timestamp = 0.0
        for count in FACE_COUNTS:
            image = tiled_frame(tiles, count)
            frames = []
            for index in range(repeats + 5):
                timestamp += 1 / 30
                frames.append(Frame(image, index, timestamp, f"faces{count}"))
            totals, _, faces = _timed_frames(pipeline, frames, warmup=5)
            results[count] = {"ms_per_frame": round(float(np.median(totals)), 3),
                              "faces_detected": round(faces / len(totals), 1)}
    return results


def _peak_rss_kb(pid: int) -> int | None:
    """VmHWM of a running process: its own high-water mark (ru_maxrss would also count the parent's pages)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def bench_startup_and_memory(model: Path) -> dict:
    """Launch main.py on the clip; time to its first JSONL record (first annotated frame) and its peak RSS."""
    command = [sys.executable, str(REPO / "main.py"), "--source", str(CLIP), "--no-display", "--model", str(model),
               "--log", "/dev/stdout"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first_line = process.stdout.readline()
    startup = time.perf_counter() - started
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _peak_rss_kb(process.pid) or 0)
        time.sleep(0.01)
    drain.join()
    if not first_line or process.returncode != 0 or not peak_kb:
        raise BenchError("main.py did not process the clip; run it by hand to see why")
    return {"startup_s": round(startup, 3), "peak_rss_mb": round(peak_kb / 1024.0, 1)}


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024.0


def bench_soak(classifier: ExpressionClassifier, minutes: float, log_path: Path) -> dict:
    """Loop the clip for ``minutes`` of video; per pass: frames/s, RSS and open file descriptors."""
    from realtime.sinks import JsonlSink

    passes = []
    offset_s = 0.0
    frames_needed = minutes * 60.0 * 29.97
    frames_done = 0
    log = JsonlSink(log_path)
    try:
        with FaceDetector("short") as detector:
            pipeline = _pipeline(detector, classifier)
            while frames_done < frames_needed:
                source = VideoFileSource(CLIP)
                started = time.perf_counter()
                count = 0
                try:
                    for frame in source:
                        shifted = dataclasses.replace(frame, index=frames_done + count,
                                                      timestamp_s=frame.timestamp_s + offset_s)
                        faces, annotated = pipeline.process(shifted, None)
                        log.consume(shifted, faces, annotated)
                        count += 1
                finally:
                    source.close()
                elapsed = time.perf_counter() - started
                frames_done += count
                offset_s += count / source.fps
                passes.append({"frames": count, "seconds": elapsed, "rss_mb": round(_rss_mb(), 1),
                               "open_fds": len(os.listdir("/proc/self/fd"))})
    finally:
        log.close()
    settled = passes[len(passes) // 10 :] if len(passes) >= 10 else passes[1:] or passes
    fps = _windowed_fps(settled, frames_per_window=29.97 * 60)
    return {
        "video_minutes": round(frames_done / 29.97 / 60.0, 2),
        "passes": len(passes),
        "rss_mb_after_warmup": settled[0]["rss_mb"],
        "rss_mb_end": passes[-1]["rss_mb"],
        "rss_growth_percent": round(100.0 * (passes[-1]["rss_mb"] / settled[0]["rss_mb"] - 1.0), 2),
        "open_fds": sorted({p["open_fds"] for p in passes}),
        "fps_per_video_minute": [round(f, 1) for f in fps],
        "fps_min": round(min(fps), 1),
        "fps_max": round(max(fps), 1),
        "fps_max_deviation_percent": round(100.0 * max(abs(f / float(np.median(fps)) - 1.0) for f in fps), 1),
    }


def _windowed_fps(passes: list[dict], frames_per_window: float) -> list[float]:
    """Frames per second over windows of about one minute of video: single passes (a second each) are noise."""
    windows, frames, seconds = [], 0, 0.0
    for record in passes:
        frames, seconds = frames + record["frames"], seconds + record["seconds"]
        if frames >= frames_per_window:
            windows.append(frames / seconds)
            frames, seconds = 0, 0.0
    if frames and (not windows or frames >= frames_per_window / 2):
        windows.append(frames / seconds)
    return windows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


def _clip_faces(classifier: ExpressionClassifier) -> np.ndarray:
    """Real preprocessed faces: the clip's own faces, as the live pipeline crops them."""
    source = VideoFileSource(CLIP)
    batches = []
    try:
        with FaceDetector("short") as detector:
            pipeline = _pipeline(detector, classifier)
            for frame in source:
                batches.append(pipeline.preprocess(frame.image, detector.detect(frame.image, frame.timestamp_s)))
    finally:
        source.close()
    return np.concatenate(batches)


def print_table(report: dict) -> None:
    clip = report["clip"]
    print(f"machine: {report['machine']}")
    print(f"end to end on {CLIP.name} ({clip['frames']} frames after warm-up, {clip['faces']} faces): "
          f"{report['fps']:.0f} frames/s, {report['frame_ms_median']:.2f} ms median, "
          f"{report['frame_ms_p99']:.2f} ms p99 per frame")
    print(f"{'stage':>12} {'median ms':>10} {'p95 ms':>8}")
    for name, row in clip["stages"].items():
        print(f"{name:>12} {row['median']:>10.3f} {row['p95']:>8.3f}")
    print(f"{'batch':>12} {'ms/batch':>10} {'ms/face':>8}")
    for size, row in report["classifier"].items():
        print(f"{size:>12} {row['ms_per_batch']:>10.3f} {row['ms_per_face']:>8.3f}")
    if "faces_scaling" in report:
        print(f"{'faces/frame':>12} {'ms/frame':>10} {'found':>8}   (1280x720, full-range detector)")
        for count, row in report["faces_scaling"].items():
            print(f"{count:>12} {row['ms_per_frame']:>10.3f} {row['faces_detected']:>8}")
        print(f"start-up to first annotated frame: {report['startup_s']:.2f} s; peak RSS {report['peak_rss_mb']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=["all", "classifier", "soak"], default="all")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: minutes of video to process")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="classifier timing per batch size")
    parser.add_argument("--repeats", type=int, default=100, help="frames per face count in the scaling test")
    parser.add_argument("--warmup", type=int, default=20, help="clip frames left out of the timing")
    parser.add_argument("--json", action="store_true", help="print everything as one JSON object on the last line")
    args = parser.parse_args(argv)
    if not CLIP.is_file():
        print(f"error: {CLIP} is missing; the benchmark reads ../shared/media", file=sys.stderr)
        return 2
    classifier = ExpressionClassifier(args.model, num_threads=args.threads)
    report: dict = {"machine": machine()}
    if args.what == "soak":
        with tempfile.TemporaryDirectory() as folder:
            report["soak"] = bench_soak(classifier, args.minutes, Path(folder) / "soak.jsonl")
        print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report["soak"].items()))
        return 0
    faces = _clip_faces(classifier)
    report["classifier"] = {str(k): v for k, v in bench_classifier(classifier, faces, args.seconds).items()}
    report["classifier_ms_per_face"] = {k: v["ms_per_face"] for k, v in report["classifier"].items()}
    if args.what == "all":
        clip = bench_clip(classifier, args.warmup)
        report.update(clip=clip, fps=clip["fps"], frame_ms_median=clip["frame_ms_median"],
                      frame_ms_p99=clip["frame_ms_p99"],
                      stages_ms={name: row["median"] for name, row in clip["stages"].items()})
        scaling = bench_face_scaling(classifier, args.repeats)
        report["faces_scaling"] = {str(k): v for k, v in scaling.items()}
        report["faces_scaling_ms"] = {str(k): v["ms_per_frame"] for k, v in scaling.items()}
        report["faces_8_over_1"] = round(scaling[8]["ms_per_frame"] / scaling[1]["ms_per_frame"], 2)
        report.update(bench_startup_and_memory(args.model))
        report["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if args.json:
        print(json.dumps(report))
    elif args.what == "all":
        print_table(report)
    else:
        print(f"machine: {report['machine']}")
        for size, row in report["classifier"].items():
            print(f"batch {size:>2}: {row['ms_per_batch']:.3f} ms per batch, {row['ms_per_face']:.3f} ms per face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
