"""batch.py --address against a real two-node Ray cluster on this machine, one node killed mid-job.

The cluster is started as a user would start one (``ray start --head``, then ``ray start --address``), each node
with one CPU, on loopback, in a temp dir of its own and with token authentication (a token of the test's own,
so the user's ``~/.ray`` is neither read nor written). Its processes are stopped by the test itself: ``ray stop``
would end every Ray process of the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.bench_batch import child_pids
from tests.conftest import REPO, run_cli
from tests.servers import free_port
from tests.test_batch import LONG_FRAMES, _copies, _records, _summary, _temporaries, _write_clip

RAY = Path(sys.executable).with_name("ray")
VIDEOS = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]


def _pids_mentioning(text: str) -> list[int]:
    """Every process whose command line names ``text`` (the cluster's temp dir): its raylets, GCS and workers."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


def _raylets(temp_dir: str) -> set[int]:
    return {pid for pid in _pids_mentioning(temp_dir)
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/raylet")}


def _ray_start(env: dict[str, str], *args: str) -> None:
    started = subprocess.run([str(RAY), "start", *args, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                              "--disable-usage-stats"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str], int]]:
    """A head and a second node; yields the address, the environment that joins it, and the second raylet's pid."""
    # Short: Ray's socket paths under it must stay within the 107 bytes a Unix socket name may have.
    root = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    token = Path(root) / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0"}
    address = f"127.0.0.1:{free_port()}"
    temp_dir = str(Path(root) / "ray")
    try:
        _ray_start(env, "--head", "--port", address.rpartition(":")[2], "--temp-dir", temp_dir,
                   "--include-dashboard=false")
        head_raylets = _raylets(temp_dir)
        _ray_start(env, "--address", address, "--temp-dir", temp_dir)
        second = _raylets(temp_dir) - head_raylets
        assert len(head_raylets) == 1 and len(second) == 1
        yield address, env, second.pop()
    finally:
        for pid in _pids_mentioning(root):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _busy_worker_of(raylet: int) -> int | None:
    """A worker of that node that is running a video, if one is."""
    for pid in child_pids(raylet):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::process_video"):
                return pid
        except OSError:
            pass
    return None


def test_a_cluster_node_killed_mid_job_still_completes_with_main_pys_logs(cluster, tmp_path: Path, media: Path):
    address, env, second_raylet = cluster
    clip = _write_clip(tmp_path / "clip.mp4", media, LONG_FRAMES)
    inputs, output = tmp_path / "in", tmp_path / "out"
    _copies(clip, inputs, VIDEOS)
    job = subprocess.Popen([sys.executable, "batch.py", str(inputs), str(output), "--address", address],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _busy_worker_of(second_raylet) is None and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.poll() is None, "the job ended before the second node ran a video"
    assert _busy_worker_of(second_raylet) is not None, "the second node never ran a video"
    os.kill(second_raylet, signal.SIGKILL)
    stdout, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "4 videos: 4 done, 0 failed" in stdout
    summary = _summary(output)
    assert sorted(summary) == VIDEOS and {row["status"] for row in summary.values()} == {"done"}
    for name in VIDEOS:
        reference = tmp_path / f"{name}.main.jsonl"
        main = run_cli("main.py", "--source", str(inputs / name), "--no-display", "--log", str(reference))
        assert main.returncode == 0, main.stderr[-3000:]
        assert (output / f"{name}.jsonl").read_text() == reference.read_text(), name
        assert len(_records(reference)) == LONG_FRAMES
    assert not _temporaries(output)
