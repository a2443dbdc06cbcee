"""batch.py leaves things tidy and says things as the user gave them: a real local Ray runtime, real videos."""

from __future__ import annotations

import csv
import os
import shutil
import stat
from pathlib import Path

from tests.conftest import REPO, run_cli

RAY_TEMP = Path("/tmp/ray")


def _sessions() -> set[str]:
    return {path.name for path in RAY_TEMP.glob("session_*") if path.name != "session_latest"}


def test_a_local_run_is_private_tidy_and_names_paths_as_given(tmp_path: Path, media: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(media / "short_hamilton_clip.mp4", inputs / "talk.mp4")
    (inputs / "empty.mp4").write_bytes(b"")
    output = os.path.relpath(tmp_path / "out", REPO)
    sessions_before = _sessions()

    result = run_cli("batch.py", str(inputs), output)
    assert result.returncode == 1, result.stderr[-3000:]  # the empty video failed
    assert "Traceback" not in result.stderr
    token = Path.home() / ".ray" / "auth_token"
    assert token.is_file() and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert _sessions() <= sessions_before, "the local runtime's session folder was left behind"
    # stderr is no terminal here: no progress bar redrawn line after line, one line for the failed video.
    assert "it/s" not in result.stderr and "video/s" not in result.stderr and "%|" not in result.stderr
    assert sum("failed: empty.mp4" in line for line in result.stderr.splitlines()) == 1
    with (tmp_path / "out" / "summary.csv").open(newline="") as file:
        reasons = {row["path"]: row["reason"] for row in csv.DictReader(file)}
    assert reasons["empty.mp4"].startswith("video file empty.mp4 is empty"), reasons
    assert str(tmp_path) not in "".join(reasons.values())
    assert f"summary in {output}/summary.csv" in result.stdout

    refused = run_cli("batch.py", str(inputs), output, "--smoothing", "0.9")
    assert refused.returncode == 2
    assert f"error: {output} holds results made with other options (the smoothing differs)" in refused.stderr


def test_help_shows_no_path_of_this_machine():
    for program in ("batch.py", "main.py", "train.py", "serve.py", "web.py"):
        shown = run_cli(program, "--help").stdout
        assert str(REPO) not in shown and str(REPO.parent) not in shown, program
