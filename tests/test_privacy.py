"""Nothing leaves the machine: a headless run makes no network connection except to loopback.

MediaPipe's PyPI build posts usage metrics to play.googleapis.com when a detector closes; the
detector routes that through a dead local proxy. strace records every connect/sendto of the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


from realtime.detector_model import ensure_detector_model
from tests.conftest import REPO, require_tool, unavailable

ADDRESS = re.compile(r'(?:sin_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def _require_strace() -> str:
    return require_tool("strace", "apt-get install strace")


def test_a_headless_run_contacts_no_host_but_loopback(tmp_path: Path, media: Path):
    strace = _require_strace()
    ensure_detector_model("short")
    trace = tmp_path / "trace.log"
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace), sys.executable, "main.py",
         "--source", str(media / "two_people.jpg"), "--no-display"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    addresses = {a or b for a, b in ADDRESS.findall(trace.read_text())}
    assert addresses <= {"127.0.0.1", "::1"}, f"contacted {sorted(addresses)}"


def _require_unshare() -> str:
    """``unshare -n``: a network namespace of its own, with no interface but a downed loopback."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        unavailable("unshare -n is not available to run the detector without a network")
    return unshare


def test_a_headless_pass_runs_with_no_network_at_all(tmp_path: Path, media: Path):
    unshare = _require_unshare()
    ensure_detector_model("short")
    log = tmp_path / "log.jsonl"
    result = subprocess.run(
        [unshare, "-n", sys.executable, "main.py", "--source", str(media / "short_hamilton_clip.mp4"),
         "--no-display", "--log", str(log)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(log.read_text().splitlines()) == 275


def test_offline_with_a_corrupted_detector_cache_ends_with_a_clear_error(tmp_path: Path, media: Path):
    unshare = _require_unshare()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "face_detection_short_range.tflite").write_bytes(b"corrupted")
    result = subprocess.run(
        [unshare, "-n", sys.executable, "main.py", "--source", str(media / "obama.jpg"), "--no-display"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "EXPRESSION_DETECTOR_CACHE": str(cache)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fetching it with pip failed" in errors[0]
