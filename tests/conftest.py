"""Shared fixtures: real data from ../shared (never copied into the repo) and small trees built from it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FER = SHARED / "data" / "fer2013"
MEDIA = SHARED / "media"
COMMITTED_MODEL = REPO / "model" / "happy_sad.tflite"


def unavailable(message: str) -> NoReturn:
    """Skip a test whose data or system tool is missing here; under CI, which provides both, fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require(path: Path) -> Path:
    """The path, or a skip where ../shared is absent; under CI a missing file fails the test instead."""
    if not path.exists():
        unavailable(f"{path} is missing (tests read ../shared beside the repo)")
    return path


def require_tool(name: str, install: str) -> str:
    """The path of a system tool that .ci/run installs (``install`` says how), or a skip / a CI failure."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({install})")
    return path


def link_subset(source: Path, destination: Path, classes: list[str], per_class: int) -> Path:
    """A DIR/<class>/ tree of symlinks to the first ``per_class`` images of each class under ``source``."""
    for name in classes:
        (destination / name).mkdir(parents=True, exist_ok=True)
        for image in sorted(require(source / name).iterdir())[:per_class]:
            (destination / name / image.name).symlink_to(image)
    return destination


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one of the project's command-line programs as a user would, from the repo root."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def kill_after_first_epoch(command: list[str], run_dir: Path) -> dict:
    """Start a training command, SIGKILL its whole process group once an epoch is saved; the run's state then."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    state_path = run_dir / "state.json"
    deadline = time.monotonic() + 300
    while not state_path.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, f"training ended (status {process.returncode}) before saving an epoch: {command}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return json.loads(state_path.read_text())


@pytest.fixture(scope="session")
def fer_val() -> Path:
    return require(FER / "val")


@pytest.fixture(scope="session")
def fer_train() -> Path:
    return require(FER / "train")


@pytest.fixture(scope="session")
def media() -> Path:
    return require(MEDIA)
