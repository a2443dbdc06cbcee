"""Real-time facial-expression detector: every face in the picture, labelled with its expression and confidence.

  python main.py                                         the default webcam, in a window
  python main.py --source clip.mp4 --output annotated.mp4
  python main.py --source photo.jpg --json               one JSON record per photo on stdout
  python main.py --source photos/ --no-display --screenshot-every 1
  python main.py --source clip.mp4 --no-display --log faces.jsonl

Window keys: q or Esc quits, s saves a screenshot, space pauses. A video plays at its own frame rate
(--fast: as fast as the CPU allows), and its last frame stays up until a key.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from model.card import DEFAULT_MODEL
from model.cli_types import fraction, non_negative_float, positive_float, positive_int
from model.errors import ExpressionDetectorError
from realtime.annotator import Annotator
from realtime.api import ExpressionDetector
from realtime.detector import DETECTOR_RANGES
from realtime.native import quiet_ffmpeg_decoder, show_native_output
from realtime.pipeline import RunOutcome, Sink, Terminated, terminate_on_sigterm
from realtime.sinks import (
    JsonlSink,
    OutputError,
    ProgressSink,
    ScreenshotSink,
    VideoSink,
    WindowSink,
    check_output_path,
    check_outputs_apart,
    check_screenshot_folder,
    video_container,
)
from realtime.sources import CAMERA_BACKENDS, open_source
from realtime.timeline import TimelineSink
from realtime.tracker import TrackerSettings

STDOUT = Path("-")
WINDOW_TITLE = "Expressions"
EXIT_CODES = """exit status:
  0    the source was processed to its end, or you quit
  1    writing an output failed mid-run (e.g. the disk filled up); what was written is finalized
  2    a source, model, detector or output could not be used (the message says which and why)
  130  interrupted by Ctrl-C or SIGTERM; outputs written so far are finalized and playable
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="0",
                        help="camera index, stream URL, video file, image, or folder of images (default: camera 0)")
    parser.add_argument("--camera-backend", choices=sorted(CAMERA_BACKENDS), default="any",
                        help="OpenCV capture backend, for cameras the default one cannot open (default: %(default)s)")
    parser.add_argument("--stall-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                        help="a camera or stream silent this long, connecting included, counts as ended "
                             "(default: %(default)s)")
    parser.add_argument("--detector", choices=DETECTOR_RANGES, default="auto",
                        help="face detector range: auto = both merged for photos, short for video; short = faces "
                             "within about 2 m; full = smaller, farther faces; both = the two merged "
                             "(default: %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"expression model (.tflite with its .json card beside it) (default: "
                             f"model/{DEFAULT_MODEL.name} in this project)")
    parser.add_argument("--output", type=Path, help="write the annotated video here: .mp4, .mov or .mkv (H.264), .webm (VP9)")
    parser.add_argument("--log", type=Path, help="write one JSON record per frame here (.jsonl; - for stdout)")
    parser.add_argument("--json", action="store_true",
                        help="answer on stdout: one JSON record per frame or photo, and nothing else; no window "
                             "(--log - --no-display)")
    parser.add_argument("--screenshot-dir", type=Path, default=Path("screenshots"),
                        help="where screenshots go, created with the first one (default: %(default)s)")
    parser.add_argument("--screenshot-every", type=positive_int, metavar="N", help="save a screenshot every N frames")
    parser.add_argument("--no-display", action="store_true", help="no window (headless runs), a progress bar instead")
    parser.add_argument("--fast", action="store_true",
                        help="in the window, play a video as fast as the CPU allows rather than at its frame rate")
    parser.add_argument("--no-stats", action="store_true", help="hide the window's FPS and face-count line")
    parser.add_argument("--output-stats", action="store_true",
                        help="also draw the FPS and face-count line into --output and screenshots")
    parser.add_argument("--show-ids", action="store_true", help="draw each face's track id")
    parser.add_argument("--timeline", type=Path, metavar="FILE.csv",
                        help="write one row per second of source time (faces seen, each label's share of the "
                             "face-time) and a chart of it, FILE.png, beside it")
    parser.add_argument("--sample-fps", type=positive_float, default=None, metavar="R",
                        help="analyse R frames per second of source time, by timestamp (default: every frame); "
                             "the log and --json get one record per analysed frame, --output and the window "
                             "show every frame with the last analysed labels held")
    parser.add_argument("--smoothing", type=non_negative_float, default=TrackerSettings.time_constant_s, metavar="SECONDS",
                        help="time constant of the per-face probability smoothing; 0 shows raw per-frame labels "
                             "(default: %(default)s)")
    parser.add_argument("--min-confidence", type=fraction, default=None,
                        help="below this smoothed confidence a face is drawn gray, as not sure "
                             "(default: the model card's)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show debug messages and the native libraries' own (LiteRT, MediaPipe, OpenCV)")
    return parser


class _ProgressSafeHandler(logging.Handler):
    """Log messages on stderr, each on a line of its own even while a progress bar is drawn there."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm  # imported by the progress bar already, where there is one

        message = record.getMessage()
        tqdm.write(f"warning: {message}" if record.levelno >= logging.WARNING else message, file=sys.stderr)


_HANDLER = _ProgressSafeHandler()


def _configure_logging(verbose: bool) -> None:
    """Our libraries' messages (saved screenshots, skipped images, fetching the detector) at INFO; with
    ``--verbose`` everything at DEBUG, and the native libraries' output too."""
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("realtime", "model"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    show_native_output(verbose)
    if not verbose:
        quiet_ffmpeg_decoder()


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise OutputError("no screen to show a window on (DISPLAY is not set); add --no-display for a headless run")


def _check_outputs(args: argparse.Namespace) -> None:
    """Everything about the outputs that can fail, checked before any file is opened (and so truncated)."""
    if args.output == STDOUT:
        raise OutputError("--output needs a file name; the annotated video cannot go to stdout")
    if args.output:
        check_output_path(args.output, "output video")
        video_container(args.output)
    if args.log and args.log != STDOUT:
        check_output_path(args.log, "log")
    screenshots = args.screenshot_every or not args.no_display
    if screenshots:
        check_screenshot_folder(args.screenshot_dir)
    if args.timeline:
        if args.timeline.suffix.lower() != ".csv":
            raise OutputError(f"--timeline {args.timeline} must name a .csv file (its chart goes beside it as .png)")
        check_output_path(args.timeline, "timeline")
    files = {"--output": args.output, "--log": args.log if args.log != STDOUT else None,
             "--timeline": args.timeline, "--timeline's chart": args.timeline.with_suffix(".png") if args.timeline
             else None}
    check_outputs_apart(Path(args.source), {role: path for role, path in files.items() if path is not None},
                        {"--screenshot-dir": args.screenshot_dir} if screenshots else {})
    if not args.no_display:
        _check_display()


def _open_sinks(args: argparse.Namespace, source, classes: list[str]) -> tuple[list[Sink], WindowSink | None]:
    """The outputs, in the order frames reach them; the window (which can still fail) opens before any file."""
    sinks: list[Sink] = []
    window = None
    screenshots = ScreenshotSink(args.screenshot_dir, args.screenshot_every) \
        if args.screenshot_every or not args.no_display else None
    try:
        if not args.no_display:
            pace = None if args.fast or source.is_live or source.is_still else 1.0 / source.fps
            stats = None if args.no_stats or args.output_stats else Annotator()
            window = WindowSink(WINDOW_TITLE, screenshots, source.is_still, pace, stats)
        if args.output:
            sinks.append(VideoSink(args.output, source.fps, source.size))
        if args.log and args.log != STDOUT:
            sinks.append(JsonlSink(args.log))
        if args.timeline:
            sinks.append(TimelineSink(args.timeline, classes, source.name))
        if args.json or args.log == STDOUT:
            sinks.append(JsonlSink(sys.stdout))
    except BaseException:
        for sink in sinks + ([window] if window else []):
            sink.close()
        raise
    sinks += [sink for sink in (screenshots, window) if sink is not None]
    if args.no_display and not (source.is_still and source.frame_count == 1):  # one photo: nothing to wait for
        sinks.append(ProgressSink(source.frame_count))
    return sinks, window


def run_detector(args: argparse.Namespace) -> int:
    _check_outputs(args)
    with contextlib.ExitStack() as stack:
        detector = stack.enter_context(ExpressionDetector(
            args.model, args.detector, args.smoothing, args.min_confidence, show_stats=args.output_stats,
            show_ids=args.show_ids))
        source = open_source(args.source, args.camera_backend, args.stall_timeout)
        stack.callback(source.close)
        if args.output and source.size is None:
            raise OutputError("--output needs a video or camera source; use --screenshot-every 1 for images")
        # The detector starts before any output is opened: if it cannot, no existing file is truncated.
        pipeline = detector.pipeline(source.is_still)
        if not source.is_still:
            stack.callback(pipeline.detector.close)
        if args.timeline and source.is_still:
            raise OutputError("--timeline needs a video or camera source: photos have no time")
        sinks, window = _open_sinks(args, source, detector.classes)
        # Frames between analysed ones are needed only where every frame is shown or saved.
        every_frame = bool(args.output or window or args.screenshot_every)
        outcome = detector.run(source, sinks, should_stop=lambda: window is not None and window.quit_requested,
                               on_end=window.hold_last if window else None, pipeline=pipeline,
                               sample_fps=args.sample_fps, every_frame=every_frame)
    return _report(args, source, outcome)


def _report(args: argparse.Namespace, source, outcome: RunOutcome) -> int:
    """The closing lines on stderr: the summary, or why the run stopped; a short file only if it ran to its end."""
    if outcome.failure is not None:
        print(f"error: writing an output failed ({outcome.failure.strerror or outcome.failure}); stopped, and what "
              f"was written so far is finalized", file=sys.stderr)
    elif outcome.status == 130:
        print(f"interrupted; outputs written so far are complete{f' ({args.output})' if args.output else ''}",
              file=sys.stderr)
    else:
        print(outcome.summary.line(), file=sys.stderr)
        if outcome.summary.reached_end and source.end_note:
            print(f"warning: {args.source} {source.end_note}", file=sys.stderr)
    return outcome.status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.no_display = args.no_display or args.json  # a scripting mode, as predict.py --image was
    _configure_logging(args.verbose)
    terminate_on_sigterm()
    try:
        return run_detector(args)
    except ExpressionDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        print("interrupted; outputs written so far are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
