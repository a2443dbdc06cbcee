"""Starting the page: options, the model loaded up front, Streamlit configured for privacy and started in-process.

Streamlit runs in this process (not ``streamlit run`` in a child), so the model loaded here is the one
every visitor's page uses, and a model or port that cannot be used ends the program with one
sentence before anything is served.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from pathlib import Path

from model.errors import ExpressionDetectorError
from realtime.api import DEFAULT_MODEL
from realtime.detector import DETECTOR_RANGES
from realtime.web.photos import MAX_UPLOAD_MB
from realtime.web.service import start_service, stop_service

PAGE_SCRIPT = Path(__file__).with_name("page.py")


def port_number(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, not {text}")
    return value


def add_host_option(parser: argparse.ArgumentParser) -> None:
    """``--host``, loopback by default, as every program that serves (web.py, serve.py) takes it."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 serves every network of this machine "
                             "(default: %(default)s, this machine only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="web.py", description="A web page for the expression detector: upload photos or use the browser's "
                                   "camera, and see every face labelled. Ctrl-C stops it.")
    parser.add_argument("--port", type=port_number, default=8501, help="port to serve on (default: %(default)s)")
    add_host_option(parser)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="expression model (.tflite with its .json card beside it) (default: "
                             f"model/{DEFAULT_MODEL.name} in this project)")
    parser.add_argument("--detector", choices=DETECTOR_RANGES, default="auto",
                        help="face detector range for photos; the camera uses short range under auto "
                             "(default: %(default)s)")
    return parser


def streamlit_options(host: str, port: int) -> dict[str, object]:
    """Streamlit's settings for this page, as its command-line flags would set them.

    Usage statistics off (Streamlit's default sends them from the visitor's browser). The welcome
    banner off: with ``--host 0.0.0.0`` it would ask checkip.amazonaws.com for this machine's public
    address; ``main`` prints the address instead, and Streamlit's own log lines below warnings are off.
    No file watcher, no developer menu, and error details off the page (each error a visitor can cause
    is a message of ours, never a traceback).
    """
    return {
        "server_address": host,
        "server_port": port,
        "server_headless": True,
        "server_maxUploadSize": MAX_UPLOAD_MB,
        "server_fileWatcherType": "none",
        "server_runOnSave": False,
        "browser_gatherUsageStats": False,
        "logger_hideWelcomeMessage": True,
        "logger_level": "warning",
        "client_toolbarMode": "minimal",
        "client_showErrorDetails": "none",
        "global_developmentMode": False,
    }


def check_port(host: str, port: int, program: str = "web.py") -> None:
    """Refuse a port in use or an address not on this machine before loading anything, in one sentence;
    ``program`` is what the message guesses holds a port in use (another web.py, another serve.py)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror:
        raise ExpressionDetectorError(f"--host {host} is not an address of this machine (unknown name)") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ExpressionDetectorError(f"port {port} on {host} is in use (another {program}?); choose another with "
                                          f"--port") from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise ExpressionDetectorError(f"--host {host} is not an address of this machine") from None
        raise ExpressionDetectorError(f"cannot serve on {host}:{port} ({error.strerror})") from None


def page_address(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class VisitorLeftFilter(logging.Filter):
    """Drops one harmless traceback: Streamlit 1.67 on Starlette 1.x logs "Exception in ASGI application"
    (``WebSocketDisconnected``) when a visitor's websocket closes while Streamlit closes it too, e.g. a
    tab closed during an answer. The visitor has left and the server is fine; every other error is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        from starlette.websockets import WebSocketDisconnected

        return not (record.exc_info and isinstance(record.exc_info[1], WebSocketDisconnected))


def serve(host: str, port: int) -> None:
    """Run Streamlit's server in this process until Ctrl-C or SIGTERM."""
    from streamlit import net_util
    from streamlit.web import bootstrap

    # Streamlit looks this machine's addresses up (a UDP "connect" to 8.8.8.8, then an HTTP request to
    # checkip.amazonaws.com) when a page from another origin opens its websocket; the page never needs them.
    net_util._internal_ip = net_util._external_ip = "127.0.0.1"
    logging.getLogger("uvicorn.error").addFilter(VisitorLeftFilter())
    options = streamlit_options(host, port)
    bootstrap.load_config_options(flag_options=options)
    bootstrap.run(str(PAGE_SCRIPT), False, [], options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_port(args.host, args.port)
        start_service(args.model, args.detector)
    except ExpressionDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Expression detector page: {page_address(args.host, args.port)}  (Ctrl-C stops it)", flush=True)
    try:
        serve(args.host, args.port)
    finally:
        stop_service()
    return 0
