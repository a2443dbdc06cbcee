"""``serve.py``: options, the detectors loaded up front, uvicorn started in this process, a clean stop.

A port in use, an address not of this machine, a model or detector that cannot be used: one sentence on
stderr and exit status 2 before anything is served. Ctrl-C and SIGTERM let uvicorn finish the requests
in progress, close MediaPipe, and exit with status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from model.cli_types import positive_int
from model.errors import ExpressionDetectorError
from realtime.api import DEFAULT_MODEL
from realtime.detector import DETECTOR_RANGES
from realtime.native import show_native_output
from realtime.pipeline import Terminated, terminate_on_sigterm
from realtime.web.server import add_host_option, check_port, page_address, port_number

# Measured on 2 cores (scripts/bench_serve.py --workers N, 16 clients): obama.jpg 56.1 requests/s with 1 worker,
# 89.3 with 2, 82.0 with 3 (README, "An HTTP API for programs"). So 2 where there are 2 cores; more cores were
# not measured: try --workers with the benchmark.
MAX_DEFAULT_WORKERS = 2
SHUTDOWN_GRACE_S = 10  # requests in progress at Ctrl-C get this long to finish


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serve.py", description="An HTTP API for the expression detector: POST a photo to /detect and get the "
                                     "JSON record main.py --json prints. Ctrl-C stops it.")
    add_host_option(parser)
    parser.add_argument("--port", type=port_number, default=8000, help="port to serve on (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="expression model (.tflite with its .json card beside it) (default: "
                             f"model/{DEFAULT_MODEL.name} in this project)")
    parser.add_argument("--detector", choices=DETECTOR_RANGES, default="auto",
                        help="face detector range, as in main.py; auto runs both ranges on photos "
                             "(default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=default_workers(),
                        help="photos read at once, each by a detector of its own; more requests wait for a free one "
                             "(default: %(default)s on this machine)")
    parser.add_argument("--access-log", action="store_true", help="log every request on stderr")
    parser.add_argument("--verbose", action="store_true",
                        help="debug messages, and the native libraries' own output (LiteRT, MediaPipe)")
    return parser


class _Lines(logging.Formatter):
    """Our libraries' messages as main.py shows them: plain, or with ``warning:`` / ``error:`` in front."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("realtime", "model"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    show_native_output(verbose)


def _serve(args: argparse.Namespace) -> None:
    check_port(args.host, args.port, "serve.py")
    import uvicorn  # here: --help and a refused address need no web server loaded

    from realtime.http_api.app import create_app
    from realtime.http_api.pool import DetectorPool

    with DetectorPool(args.model, args.detector, args.workers) as pool:
        config = uvicorn.Config(create_app(pool), host=args.host, port=args.port, log_level="warning",
                                access_log=args.access_log, server_header=False, lifespan="off",
                                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        print(f"Expression detector API: {page_address(args.host, args.port)}/detect  ({args.workers} workers; "
              f"Ctrl-C stops it)", flush=True)
        uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    terminate_on_sigterm()
    try:
        _serve(args)
    except ExpressionDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated):
        pass  # uvicorn has stopped and re-raised the signal; the pool is closed
    print("stopped", file=sys.stderr)
    return 0
