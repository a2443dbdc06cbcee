"""Real-time facial-expression detector: every face in the picture, labelled with its expression and confidence.

  python main.py                                         the default webcam, in a window
  python main.py --source clip.mp4 --output annotated.mp4
  python main.py --source photo.jpg --no-display --screenshot-every 1
  python main.py --source clip.mp4 --no-display --log faces.jsonl

Window keys: q or Esc quits, s saves a screenshot, space pauses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from model.cli_types import fraction, non_negative_float, positive_float, positive_int
from model.preprocess import CropFraming
from realtime.annotator import Annotator
from realtime.classifier import ExpressionClassifier, ModelError
from realtime.detector import DetectorError, FaceDetector
from realtime.pipeline import ExpressionPipeline, RunSummary, run
from realtime.sinks import JsonlSink, OutputError, ProgressLine, ScreenshotSink, VideoSink, WindowSink
from realtime.sources import CAMERA_BACKENDS, SourceError, open_source
from realtime.tracker import FaceTracker, TrackerSettings

REPO = Path(__file__).resolve().parent
DEFAULT_MODEL = REPO / "model" / "happy_sad.tflite"
EXIT_CODES = """exit status:
  0    the source was processed to its end, or you quit
  1    writing an output failed mid-run (e.g. the disk filled up); what was written is finalized
  2    a source, model, detector or output could not be used (the message says which and why)
  130  interrupted by Ctrl-C or SIGTERM; outputs written so far are finalized and playable
"""


class Terminated(Exception):
    """SIGTERM, turned into an exception so that outputs are finalized exactly as on Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="0",
                        help="camera index, stream URL, video file, image, or folder of images (default: camera 0)")
    parser.add_argument("--camera-backend", choices=sorted(CAMERA_BACKENDS), default="any",
                        help="OpenCV capture backend, for cameras the default one cannot open")
    parser.add_argument("--stall-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                        help="a camera or stream silent this long counts as ended (default: %(default)s)")
    parser.add_argument("--detector", choices=["short", "full"], default="short",
                        help="short range: faces within about 2 m; full range: smaller, farther faces")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="expression model (.tflite with its .json card beside it)")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument("--log", type=Path, help="write one JSON record per frame here (.jsonl)")
    parser.add_argument("--screenshot-dir", type=Path, default=Path("screenshots"),
                        help="where screenshots go (default: %(default)s)")
    parser.add_argument("--screenshot-every", type=positive_int, metavar="N", help="save a screenshot every N frames")
    parser.add_argument("--no-display", action="store_true", help="no window (headless runs)")
    parser.add_argument("--no-stats", action="store_true", help="hide the FPS and face-count overlay")
    parser.add_argument("--show-ids", action="store_true", help="draw each face's track id")
    parser.add_argument("--smoothing", type=non_negative_float, default=TrackerSettings.time_constant_s, metavar="SECONDS",
                        help="time constant of the per-face probability smoothing; 0 shows raw per-frame labels "
                             "(default: %(default)s)")
    parser.add_argument("--min-confidence", type=fraction, default=None,
                        help="below this smoothed confidence a face is drawn gray, as not sure "
                             "(default: the model card's)")
    return parser


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise OutputError("no screen to show a window on (DISPLAY is not set); add --no-display for a headless run")


def _open_sinks(args, source) -> tuple[list, WindowSink | None]:
    sinks: list = []
    window = None
    needs_screenshots = args.screenshot_every or not args.no_display
    screenshots = ScreenshotSink(args.screenshot_dir, args.screenshot_every) if needs_screenshots else None
    try:
        if args.output:
            size = source.size
            if size is None:
                raise OutputError("--output needs a video or camera source; use --screenshot-every 1 for images")
            sinks.append(VideoSink(args.output, source.fps, size))
        if args.log:
            sinks.append(JsonlSink(args.log))
        if screenshots is not None:
            sinks.append(screenshots)
        if not args.no_display:
            _check_display()
            window = WindowSink(f"Expressions - {source.name}", screenshots, hold_stills=source.is_still)
            sinks.append(window)
    except Exception:
        for sink in sinks:
            sink.close()
        raise
    return sinks, window


@contextlib.contextmanager
def _signals_deferred():
    """Hold Ctrl-C and SIGTERM while outputs are finalized, so a second press cannot cut an MP4 short.

    Where signals cannot be blocked (Windows), finalizing simply runs unguarded.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _close_all(sinks: list) -> OSError | None:
    """Close every sink even if one fails (a full disk shows up at the last flush), returning the first failure."""
    failure = None
    for sink in sinks:
        try:
            sink.close()
        except OSError as error:
            failure = failure or error
    return failure


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _build_pipeline(args, classifier: ExpressionClassifier, detector: FaceDetector, source) -> ExpressionPipeline:
    settings = TrackerSettings(
        time_constant_s=args.smoothing,
        switch_margin=TrackerSettings.switch_margin if args.smoothing > 0 else 0.0,
        min_confidence=classifier.card.min_confidence if args.min_confidence is None else args.min_confidence)
    return ExpressionPipeline(
        detector, classifier, FaceTracker(tuple(classifier.classes), settings),
        Annotator(show_stats=not args.no_stats, show_ids=args.show_ids), CropFraming(), still_images=source.is_still)


def _process(source, pipeline: ExpressionPipeline, sinks: list, window, progress) -> tuple[int, RunSummary | None]:
    """Run to the end, a quit, a signal or a write failure; every sink is closed (finalized) in all cases."""
    failure: OSError | None = None
    summary = None
    status = 0
    try:
        summary = run(source, pipeline, sinks,
                      should_stop=lambda: window is not None and window.quit_requested,
                      on_frame=(lambda s, fps: progress.update(s.frames, fps or 0.0)) if progress else None)
    except (KeyboardInterrupt, Terminated):
        status = 130
    except OSError as error:
        failure = error
    finally:
        with _signals_deferred():
            failure = _close_all(sinks) or failure
        if progress:
            progress.finish()
    if failure is not None:
        print(f"error: writing an output failed ({failure.strerror or failure}); stopped, and what was written "
              f"so far is finalized", file=sys.stderr)
        return 1, None
    return status, summary


def run_detector(args) -> int:
    classifier = ExpressionClassifier(args.model)
    source = open_source(args.source, args.camera_backend, args.stall_timeout)
    try:
        sinks, window = _open_sinks(args, source)
        progress = ProgressLine(source.frame_count) if args.no_display else None
        with FaceDetector(args.detector, still_images=source.is_still) as detector:
            pipeline = _build_pipeline(args, classifier, detector, source)
            status, summary = _process(source, pipeline, sinks, window, progress)
    finally:
        source.close()
    if status == 130:
        print(f"interrupted; outputs written so far are complete{f' ({args.output})' if args.output else ''}",
              file=sys.stderr)
    if summary is not None:
        print(summary.line(), file=sys.stderr)
        if source.end_note:
            print(f"warning: {args.source} {source.end_note}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run_detector(args)
    except (SourceError, ModelError, DetectorError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        print("interrupted; outputs written so far are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
