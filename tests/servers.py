"""A front end that serves (web.py, serve.py) in a child process on a free loopback port, as the tests start them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO
from tests.test_privacy import ADDRESS

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever proxy is set


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``python PROGRAM --port P`` (optionally under a wrapper such as strace), its own TMPDIR, its stderr in a file;
    ready once ``health_path`` answers 200."""

    program = ""
    health_path = ""

    def __init__(self, tmp: Path, wrapper: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.wrapped = bool(wrapper)
        self.temp_dir = tmp / "tmp"
        self.temp_dir.mkdir(parents=True)
        self.stderr_path = tmp / "server.stderr"
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, self.program, "--port", str(self.port), *args], cwd=REPO,
            stdout=subprocess.PIPE, stderr=self.stderr_path.open("w"), text=True,
            env={**os.environ, "TMPDIR": str(self.temp_dir)})
        self.banner = self.process.stdout.readline()
        self._wait_until_healthy()

    def _wait_until_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr_path.read_text()[-3000:]
            try:
                with _DIRECT.open(f"{self.url}{self.health_path}", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{self.program} did not answer within {timeout_s} s")

    @property
    def pid(self) -> int:
        """The Python process itself, also where a wrapper (strace) started it."""
        if not self.wrapped:
            return self.process.pid
        return int(Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()[0])

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Stop it as a person (Ctrl-C) or a service manager (SIGTERM) would; the exit status and its stderr."""
        if self.process.poll() is None:
            os.kill(self.pid, signum)
        status = self.process.wait(timeout=60)
        return status, self.stderr_path.read_text()


def assert_stayed_local(server: ServerProcess, trace: str, started: int) -> None:
    """Under strace: the server contacted no host but loopback, and after start-up (``trace[started:]``) it
    opened no file for writing and left nothing in its TMPDIR."""
    addresses = {a or b for a, b in ADDRESS.findall(trace)}
    assert addresses <= {"127.0.0.1", "::1"}, f"contacted {sorted(addresses)}"
    written = _written_files(trace[started:])
    assert not written, f"wrote {sorted(written)} while serving"
    assert not any(server.temp_dir.iterdir()), "files were left in the server's TMPDIR"


def _written_files(trace: str) -> set[str]:
    """Files the traced process opened for writing or creating, less the interpreter's bytecode cache."""
    opened = re.findall(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)', trace)
    return {path for path, flags in opened
            if re.search(r"O_WRONLY|O_RDWR|O_CREAT", flags) and not path.startswith(("/dev/", "/proc/", "/sys/"))
            and "__pycache__" not in path}
