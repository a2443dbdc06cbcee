"""No output a user names can destroy the source or another output: refused before anything is opened.

Real files: a copy of the shared clip and of a shared photo, reached through every spelling of one path
(``..``, a symbolic link, a hard link). Each refusal is one sentence, exit 2, and the file is untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from realtime.batch_jobs import find_videos
from tests.conftest import run_cli


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(args: list[str], untouched: list[Path], expected: str) -> None:
    before = {path: (_digest(path), path.stat().st_size) for path in untouched}
    result = run_cli("main.py", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    for path, (digest, size) in before.items():
        assert path.stat().st_size == size and _digest(path) == digest, f"{path} was changed"


@pytest.fixture
def clip(tmp_path: Path, media: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    return Path(shutil.copy(media / "short_hamilton_clip.mp4", folder / "clip.mp4"))


@pytest.fixture
def photo(tmp_path: Path, media: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return Path(shutil.copy(media / "obama.jpg", folder / "photo.jpg"))


def _spellings(path: Path, kind: str) -> Path:
    """Another path to the same file: through ``..``, a symbolic link, or a hard link."""
    if kind == "same":
        return path
    if kind == "dotdot":
        return path.parent / ".." / path.parent.name / path.name
    other = path.parent / f"other{path.suffix}"
    if kind == "symlink":
        other.symlink_to(path)
    else:
        os.link(path, other)
    return other


@pytest.mark.parametrize("kind", ["same", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("option", ["--output", "--log"])
def test_an_output_that_is_the_source_video_is_refused(clip: Path, option: str, kind: str):
    target = _spellings(clip, kind)
    _refused(["--source", str(clip), "--no-display", option, str(target)], [clip], "is the source itself")


@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink"])
def test_a_log_that_is_the_source_photo_is_refused(photo: Path, kind: str):
    target = _spellings(photo, kind)
    _refused(["--source", str(photo), "--no-display", "--log", str(target)], [photo], "is the source itself")


def test_a_json_photo_with_its_own_log_is_refused(photo: Path):
    _refused(["--source", str(photo), "--json", "--log", str(photo)], [photo], "is the source itself")


def test_two_outputs_on_one_file_are_refused(clip: Path, tmp_path: Path):
    existing = tmp_path / "result.mp4"
    existing.write_bytes(b"an earlier result")
    link = tmp_path / "result-link.mp4"
    link.symlink_to(existing)
    _refused(["--source", str(clip), "--no-display", "--output", str(existing), "--log", str(link)],
             [clip, existing], "--log and --output are the same file")


def test_screenshots_into_the_photo_folder_are_refused(photo: Path):
    _refused(["--source", str(photo.parent), "--no-display", "--screenshot-every", "1",
              "--screenshot-dir", str(photo.parent / "shots")], [photo], "inside the source folder")


def test_outputs_elsewhere_still_work(clip: Path, tmp_path: Path):
    """The guard refuses only what would overwrite: an output beside the source is written as before."""
    log = clip.parent / "clip.jsonl"
    result = run_cli("main.py", "--source", str(clip), "--no-display", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.stat().st_size > 0


def test_batch_output_inside_input_through_a_link_is_not_read_back(tmp_path: Path, media: Path):
    inputs = tmp_path / "sessions"
    (inputs / "results").mkdir(parents=True)
    shutil.copy(media / "short_hamilton_clip.mp4", inputs / "talk.mp4")
    (inputs / "results" / "talk.annotated.mp4").write_bytes((inputs / "talk.mp4").read_bytes())
    link = tmp_path / "results-link"
    link.symlink_to(inputs / "results")
    assert [video.name for video in find_videos(inputs, link)] == ["talk.mp4"]
    assert [video.name for video in find_videos(inputs, tmp_path / "sessions" / ".." / "sessions" / "results")] \
        == ["talk.mp4"]
