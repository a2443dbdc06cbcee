"""Every face in every video of a folder (or a list), labelled, with a summary per video; on all cores, or a cluster.

  python batch.py sessions/ results/                       a local Ray runtime, one worker per core
  python batch.py sessions/ results/ --workers 4 --output-video
  python batch.py videos.txt results/ --address HEAD:6379  join a running Ray cluster

INPUT is a folder (searched recursively) or a text file listing video paths, one a line. OUTPUT gets, per video,
<relative path>.jsonl (main.py --log's records), with --output-video <relative path>.annotated.mp4, with
--timeline <relative path>.timeline.csv and .timeline.png (main.py --timeline's), and one summary.csv. Outputs appear only complete; a rerun skips finished videos, so rerun after a crash or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from model.card import DEFAULT_MODEL
from model.cli_types import fraction, non_negative_float, positive_float, positive_int
from model.errors import ExpressionDetectorError
from realtime.batch_jobs import (
    DONE,
    FAILED,
    INTERRUPTED,
    PARTIAL,
    SKIPPED,
    SUMMARY_NAME,
    BatchReport,
    DetectorOptions,
    JobOptions,
    VideoResult,
    find_videos,
    model_option,
    run_batch,
)
from realtime.detector import DETECTOR_RANGES
from realtime.native import quiet_ffmpeg_decoder
from realtime.pipeline import Terminated, terminate_on_sigterm
from realtime.tracker import TrackerSettings

INTERRUPTED_MESSAGE = "interrupted; finished outputs are complete and none is half-written: rerun to process the rest"
EXIT_CODES = """exit status:
  0    every video done (or skipped as done before); a video cut short counts, with a note in summary.csv
  1    some videos failed (summary.csv says why); the others are done
  2    the input, output, model, detector or cluster could not be used (the message says which and why)
  130  interrupted by Ctrl-C or SIGTERM; finished outputs are complete, none is half-written: rerun to finish
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch.py", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, metavar="INPUT", help="folder of videos, or a text file listing them")
    parser.add_argument("output", type=Path, metavar="OUTPUT", help="folder for the logs, videos and summary.csv")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="videos processed at once (default: this machine's cores, or the cluster's CPUs)")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="join the Ray cluster at HOST:PORT (ray start --head prints it) instead of starting one")
    parser.add_argument("--output-video", action="store_true", help="also write each annotated video (.mp4)")
    parser.add_argument("--timeline", action="store_true",
                        help="also write each video's timeline, as main.py --timeline: <path>.timeline.csv (one row "
                             "per second) and its chart <path>.timeline.png")
    parser.add_argument("--detector", choices=DETECTOR_RANGES, default="auto",
                        help="face detector range, as main.py's: auto (short for video), short, full, or both "
                             "(default: %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"expression model (.tflite with its .json card beside it) (default: "
                             f"model/{DEFAULT_MODEL.name} in this project)")
    parser.add_argument("--sample-fps", type=positive_float, default=None, metavar="R",
                        help="analyse R frames per second of each video's time, as main.py --sample-fps (default: "
                             "every frame); annotated videos keep every frame, the last labels held")
    parser.add_argument("--smoothing", type=non_negative_float, default=TrackerSettings.time_constant_s,
                        metavar="SECONDS", help="time constant of the per-face probability smoothing; 0 gives raw "
                                                "per-frame labels (default: %(default)s)")
    parser.add_argument("--min-confidence", type=fraction, default=None,
                        help="below this smoothed confidence a face is marked uncertain (default: the model card's)")
    parser.add_argument("--output-stats", action="store_true",
                        help="draw the FPS and face-count line into the annotated videos")
    parser.add_argument("--show-ids", action="store_true", help="draw each face's track id in the annotated videos")
    return parser


class Progress:
    """A progress bar on stderr: videos done of those to process, and frames per second over all of them.

    A video that failed or was cut short gets a line of its own above the bar.
    """

    def __init__(self) -> None:
        self._bar: tqdm | None = None
        self._frames = 0
        self._started = time.perf_counter()

    def start(self, total: int, workers: int) -> None:
        tqdm.write(f"processing {_videos(total)}, {workers} at a time", file=sys.stderr)
        # On a terminal only: in a log, a bar's redraws become repeated lines; the totals line says it all.
        self._bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True,
                         disable=not sys.stderr.isatty())
        self._started = time.perf_counter()

    def add(self, result: VideoResult) -> None:
        if result.status in (FAILED, PARTIAL):
            tqdm.write(f"{result.status}: {result.name}: {result.reason}", file=sys.stderr)
        self._frames += result.stats.frames if result.stats is not None else 0
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._frames / (time.perf_counter() - self._started):.0f} frames/s",
                                      refresh=False)
            self._bar.update(1)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()


def totals_line(report: BatchReport, output: Path) -> str:
    """The final line: videos by status, then frames and time of those processed now, Ray's start-up apart."""
    counts = ", ".join(f"{report.count(status)} {status}" for status in (DONE, PARTIAL, FAILED, SKIPPED, INTERRUPTED)
                       if report.count(status) or status in (DONE, FAILED))
    work = ""
    if report.processing_s:
        work = (f"; {report.frames} frames in {report.processing_s:.1f} s "
                f"({report.frames / report.processing_s:.1f} frames/s), plus {report.ray_startup_s:.1f} s of Ray "
                f"start-up")
    return f"{_videos(len(report.results))}: {counts}{work}; summary in {output / SUMMARY_NAME}"


def _videos(count: int) -> str:
    return f"{count} video" if count == 1 else f"{count} videos"


def run(args: argparse.Namespace) -> int:
    detector = DetectorOptions(model_option(args.model), args.detector, args.smoothing, args.min_confidence,
                               show_stats=args.output_stats, show_ids=args.show_ids, sample_fps=args.sample_fps)
    options = JobOptions(Path(os.path.abspath(args.output)), detector, args.output_video, str(args.output),
                         timeline=args.timeline)
    videos = find_videos(args.input, args.output)
    progress = Progress()
    try:
        report = run_batch(videos, options, args.workers, args.address, progress.add, progress.start)
    finally:
        progress.finish()
    print(totals_line(report, args.output))
    if report.interrupted:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return 130
    return 1 if report.count(FAILED) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_ffmpeg_decoder()  # before Ray starts: its local workers inherit this process's environment
    terminate_on_sigterm()
    try:
        return run(args)
    except ExpressionDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
