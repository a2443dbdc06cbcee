"""Every message says what is true: the right sentence for each bad input, no native chatter, honest summaries.

Real files and real runs of main.py, as a user meets them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import pytest

from tests.conftest import REPO, run_cli


def _error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _cut_short_faststart(media: Path, path: Path) -> Path:
    """The shared clip remuxed with its index at the front, then cut mid-stream: it opens, then breaks."""
    whole = path.with_name("whole.mp4")
    with av.open(str(media / "short_hamilton_clip.mp4")) as source, \
            av.open(str(whole), "w", options={"movflags": "faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_cut_short_mp4_prints_our_warning_and_no_ffmpeg_lines(tmp_path: Path, media: Path):
    cut = _cut_short_faststart(media, tmp_path / "cut.mp4")
    result = run_cli("main.py", "--source", str(cut), "--no-display")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cut short or damaged" in result.stderr
    assert "[h264 @" not in result.stderr and "partial file" not in result.stderr, result.stderr[-3000:]


def test_a_missing_folder_is_called_a_folder(tmp_path: Path):
    line = _error_line(run_cli("main.py", "--source", f"{tmp_path / 'missing_folder'}/", "--no-display"))
    assert "folder" in line and "does not exist" in line and "video" not in line


def test_a_model_folder_and_a_model_that_is_no_model(tmp_path: Path):
    folder_line = _error_line(run_cli("main.py", "--model", str(REPO / "model"), "--source", "x.jpg", "--json"))
    assert "is a folder" in folder_line
    readme_line = _error_line(run_cli("main.py", "--model", str(REPO / "README.md"), "--source", "x.jpg", "--json"))
    assert "is not a model" in readme_line and "card" not in readme_line.split("is not a model")[0]


def test_a_zero_byte_png_is_called_empty(tmp_path: Path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "is empty (0 bytes)" in _error_line(run_cli("main.py", "--source", str(empty), "--json"))


def test_an_unknown_video_suffix_is_refused_before_anything_is_written(tmp_path: Path, media: Path):
    target = tmp_path / "out.avi"
    line = _error_line(run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--no-display",
                               "--output", str(target)))
    assert ".avi is not a video format" in line
    assert not target.exists()


@pytest.mark.parametrize("suffix,container,codec", [(".webm", "webm", "vp9"), (".mkv", "matroska", "h264"),
                                                    (".mov", "mov", "h264")])
def test_the_output_is_written_as_its_suffix_says(tmp_path: Path, media: Path, suffix: str, container: str,
                                                  codec: str):
    clip = tmp_path / "clip.mp4"
    with av.open(str(media / "short_hamilton_clip.mp4")) as source, av.open(str(clip), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for index, packet in enumerate(source.demux(source.streams.video[0])):
            if packet.dts is None or index >= 30:
                continue
            packet.stream = stream
            target.mux(packet)
    output = tmp_path / f"out{suffix}"
    result = run_cli("main.py", "--source", str(clip), "--no-display", "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    with av.open(str(output)) as written:
        assert container in written.format.name.split(",")
        assert written.streams.video[0].codec_context.name == codec
        assert sum(1 for _ in written.decode(video=0)) >= 25


def test_one_photo_one_face_summary_and_no_progress_bar(media: Path):
    result = run_cli("main.py", "--source", str(media / "obama.jpg"), "--no-display")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 photo, 1 face (" in result.stderr
    quiet = run_cli("main.py", "--source", str(media / "obama.jpg"), "--json")
    assert quiet.returncode == 0 and "frame/s" not in quiet.stderr and "%|" not in quiet.stderr, quiet.stderr


def test_photos_have_no_time_in_their_records(tmp_path: Path, media: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(media / name, folder / name)
    result = run_cli("main.py", "--source", str(folder), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["t"] for record in records] == [None, None]
    video = run_cli("main.py", "--source", str(media / "short_hamilton_clip.mp4"), "--json")
    times = [json.loads(line)["t"] for line in video.stdout.splitlines()[:3]]
    assert times[0] == 0.0 and times[1] > 0




def test_what_the_readme_examples_write_is_ignored_by_git():
    """The default screenshot folder and the files the README's examples write are not untracked clutter."""
    import subprocess

    for path in ("screenshots/clip_12.png", "annotated.mp4", "annotated.jpg", "faces.jsonl", "results/a.jsonl"):
        shown = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert shown.returncode == 0, f"{path} is not ignored"
