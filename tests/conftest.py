"""Shared fixtures: real data from ../shared (never copied into the repo) and small trees built from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FER = SHARED / "data" / "fer2013"
MEDIA = SHARED / "media"
COMMITTED_MODEL = REPO / "model" / "happy_sad.tflite"


def require(path: Path) -> Path:
    """The path, or a skip where ../shared is absent; under CI a missing file fails the test instead."""
    if path.exists():
        return path
    message = f"{path} is missing (tests read ../shared beside the repo)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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


@pytest.fixture(scope="session")
def fer_val() -> Path:
    return require(FER / "val")


@pytest.fixture(scope="session")
def fer_train() -> Path:
    return require(FER / "train")


@pytest.fixture(scope="session")
def media() -> Path:
    return require(MEDIA)
