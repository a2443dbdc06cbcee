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

import pytest

from realtime.detector_model import ensure_detector_model
from tests.conftest import REPO

ADDRESS = re.compile(r'(?:sin_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def _require_strace() -> str:
    path = shutil.which("strace")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("strace is not installed (apt-get install strace)")
        pytest.skip("strace is not installed")
    return path


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
