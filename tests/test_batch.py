"""batch.py as a user runs it: a real local Ray runtime, the real pipeline, real video decode, real files out.

The videos are the first frames of short_hamilton_clip.mp4, written into tmp folders; every log is compared
with main.py's on the same file, record for record.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from realtime.batch_jobs import TEMPORARY, find_videos, pinned_to, stats_from_log, worker_cores
from scripts.bench_batch import child_pids
from tests.conftest import REPO, run_cli

SHORT_FRAMES = 60
LONG_FRAMES = 150  # long enough (several seconds on a loaded core) for a kill or Ctrl-C to land mid-video


def _write_clip(path: Path, media: Path, frames: int) -> Path:
    """The first ``frames`` frames of the shared clip, as an MP4 of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS), (640, 360))
    for _ in range(frames):
        ok, image = capture.read()
        assert ok
        writer.write(image)
    writer.release()
    capture.release()
    return path


def _copies(source: Path, folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        paths.append(path)
    return paths


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _summary(output: Path) -> dict[str, dict]:
    with (output / "summary.csv").open(newline="") as file:
        return {row["path"]: row for row in csv.DictReader(file)}


def _temporaries(output: Path) -> list[Path]:
    return [path for path in output.rglob("*") if TEMPORARY.match(path.name)]


def _main_log(video: Path, log: Path) -> list[dict]:
    result = run_cli("main.py", "--source", str(video), "--no-display", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    return _records(log)


def _batch(*args: str) -> subprocess.CompletedProcess:
    result = run_cli("batch.py", *args)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        for child in child_pids(queue.pop()):
            found.append(child)
            queue.append(child)
    return found


def _busy_workers(driver: int) -> list[int]:
    """The driver's Ray worker processes that are running a video now (Ray titles them after the task)."""
    busy = []
    for pid in _descendants(driver):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::process_video"):
                busy.append(pid)
        except OSError:
            pass
    return busy


def _wait_for(condition, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _start_batch(*args: str) -> subprocess.Popen:
    """batch.py in a session of its own, as a terminal would run it, so Ctrl-C can go to its whole group."""
    return subprocess.Popen([sys.executable, "batch.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, media: Path) -> Path:
    return _write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", media, SHORT_FRAMES)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, media: Path) -> Path:
    return _write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", media, LONG_FRAMES)


@pytest.fixture(scope="module")
def first_job(tmp_path_factory, short_clip: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """Three videos (two in nested folders) on two workers, with annotated videos."""
    root = tmp_path_factory.mktemp("job")
    _copies(short_clip, root / "in", ["one.mp4", "day1/two.mp4", "day1/room/three.mp4"])
    result = _batch(str(root / "in"), str(root / "out"), "--workers", "2", "--output-video")
    return root / "in", root / "out", result


def test_three_videos_on_two_workers_match_main_py(first_job, tmp_path: Path):
    videos, output, result = first_job
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(output)
    assert list(summary) == ["day1/room/three.mp4", "day1/two.mp4", "one.mp4"]
    for name, row in summary.items():
        reference = _main_log(videos / name, tmp_path / "main.jsonl")
        assert _records(output / f"{name}.jsonl") == reference
        assert _count_frames(output / f"{name}.annotated.mp4") == SHORT_FRAMES
        labels = [face["label"] for record in reference for face in record["faces"]]
        assert row["status"] == "done" and row["reason"] == ""
        assert int(row["frames"]) == SHORT_FRAMES
        assert float(row["duration_s"]) == pytest.approx(SHORT_FRAMES / 29.97, abs=1e-3)
        assert int(row["frames_with_faces"]) == sum(bool(record["faces"]) for record in reference) > 0
        assert int(row["tracks"]) == len({face["id"] for record in reference for face in record["faces"]})
        for label in ("happy", "sad", "neutral"):
            assert float(row[f"share_{label}"]) == pytest.approx(labels.count(label) / len(labels), abs=1e-4)
    assert not _temporaries(output)
    assert "3 videos: 3 done, 0 failed" in result.stdout


def test_a_rerun_skips_everything_and_rewrites_nothing(first_job):
    videos, output, _ = first_job
    outputs = sorted(p for p in output.rglob("*") if p.suffix in (".jsonl", ".mp4"))
    before = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in outputs}
    result = _batch(str(videos), str(output), "--workers", "2", "--output-video")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in outputs} == before
    for row in _summary(output).values():
        assert row["status"] == "skipped" and int(row["frames"]) == SHORT_FRAMES
    assert "3 videos: 0 done, 0 failed, 3 skipped" in result.stdout


def test_resuming_with_other_options_is_refused(first_job):
    videos, output, _ = first_job
    result = _batch(str(videos), str(output), "--smoothing", "0")
    assert result.returncode == 2
    expected = (f"error: {output} holds results made with other options (the smoothing differs); give another OUTPUT "
                f"folder, or the same options to resume")
    assert result.stderr.strip().splitlines() == [expected]


def test_unreadable_and_cut_short_videos_are_recorded_and_the_rest_done(tmp_path: Path, short_clip: Path):
    videos = tmp_path / "in"
    _copies(short_clip, videos, ["good1.mp4", "good2.mp4"])
    (videos / "broken.mp4").write_bytes(b"not a video at all\n" * 100)
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    capture = cv2.VideoCapture(str(short_clip))
    while (frame := capture.read())[0]:
        writer.write(frame[1])
    writer.release()
    (videos / "cut.avi").write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    output = tmp_path / "out"
    result = _batch(str(videos), str(output), "--workers", "2")
    assert result.returncode == 1, result.stderr[-3000:]
    summary = _summary(output)
    assert summary["good1.mp4"]["status"] == summary["good2.mp4"]["status"] == "done"
    assert summary["broken.mp4"]["status"] == "failed"
    assert "cannot be decoded as a video" in summary["broken.mp4"]["reason"]
    assert not (output / "broken.mp4.jsonl").exists()
    cut = summary["cut.avi"]
    frames = len(_records(output / "cut.avi.jsonl"))
    assert cut["status"] == "partial" and 10 < frames < SHORT_FRAMES == 60 and int(cut["frames"]) == frames
    assert f"ended after {frames} of its 60 frames" in cut["reason"]
    assert "failed: broken.mp4:" in result.stderr and "partial: cut.avi:" in result.stderr
    assert not _temporaries(output)


def test_a_worker_killed_mid_video_is_retried_and_the_job_completes(tmp_path: Path, long_clip: Path):
    names = [f"session{i}/clip.mp4" for i in range(4)]
    _copies(long_clip, tmp_path / "in", names)
    output = tmp_path / "out"
    batch = _start_batch(str(tmp_path / "in"), str(output), "--workers", "2")
    _wait_for(lambda: _temporaries(output) and _busy_workers(batch.pid))
    victim = _busy_workers(batch.pid)[0]
    os.kill(victim, signal.SIGKILL)
    stderr = batch.communicate(timeout=600)[1]
    assert batch.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    reference = _main_log(long_clip, tmp_path / "main.jsonl")
    for name in names:
        assert _summary(output)[name]["status"] == "done"
        assert _without_source(_records(output / f"{name}.jsonl")) == _without_source(reference)
    assert not _temporaries(output)


def _mediapipe_thread_cpus(worker: int) -> set[str]:
    """The CPU lists MediaPipe's graph threads (named ``drishti``) of one worker process may run on."""
    allowed = set()
    for task in Path(f"/proc/{worker}/task").iterdir():
        try:
            if (task / "comm").read_text().strip().startswith("drishti"):
                status = (task / "status").read_text()
                allowed.add(status.split("Cpus_allowed_list:")[1].split()[0])
        except OSError:
            pass
    return allowed


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning two workers apart needs two CPUs")
def test_two_local_workers_run_on_cpus_of_their_own(tmp_path: Path, long_clip: Path):
    """Each running video, MediaPipe's threads included, is held to its own CPU, and the logs stay main.py's."""
    names = [f"session{i}/clip.mp4" for i in range(2)]
    _copies(long_clip, tmp_path / "in", names)
    output = tmp_path / "out"
    batch = _start_batch(str(tmp_path / "in"), str(output), "--workers", "2")
    seen: dict[int, set[str]] = {}

    def both_workers_pinned() -> bool:
        for worker in _busy_workers(batch.pid):
            with contextlib.suppress(OSError):
                cpus = _mediapipe_thread_cpus(worker)
                if cpus:  # a worker between videos has no MediaPipe threads: keep what was seen
                    seen[worker] = cpus
        return batch.poll() is not None or sum(len(cpus) == 1 for cpus in seen.values()) >= 2

    _wait_for(both_workers_pinned)
    stderr = batch.communicate(timeout=600)[1]
    assert batch.returncode == 0, stderr[-3000:]
    pinned = [cpus for cpus in seen.values() if cpus]
    assert len(pinned) == 2 and all(len(cpus) == 1 for cpus in pinned) and pinned[0] != pinned[1], seen
    reference = _without_source(_main_log(long_clip, tmp_path / "main.jsonl"))
    assert all(_without_source(_records(output / f"{name}.jsonl")) == reference for name in names)


def test_worker_cpus_split_this_process_cpus_and_a_cluster_is_left_alone():
    cpus = os.sched_getaffinity(0)
    for workers in range(1, len(cpus) + 1):
        shares = worker_cores(workers, None)
        assert len(shares) == workers and all(shares)
        assert set().union(*shares) == cpus and sum(map(len, shares)) == len(cpus)
    assert worker_cores(len(cpus) + 1, None) == [None] * (len(cpus) + 1)
    assert worker_cores(2, "127.0.0.1:6379") == [None, None]


def test_pinning_holds_threads_started_inside_and_is_undone_after():
    earlier = os.sched_getaffinity(0)
    one = frozenset({min(earlier)})
    inside: list[set[int]] = []
    with pinned_to(one):
        thread = threading.Thread(target=lambda: inside.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
        assert os.sched_getaffinity(0) == one
    assert inside == [one]
    assert os.sched_getaffinity(0) == earlier
    with pytest.raises(RuntimeError), pinned_to(one):
        raise RuntimeError("a failed video")
    assert os.sched_getaffinity(0) == earlier
    with pinned_to(None):
        assert os.sched_getaffinity(0) == earlier
    with pinned_to(frozenset({max(earlier) + 4096})):  # no such CPU: the video runs unpinned, not failed
        assert os.sched_getaffinity(0) == earlier


_AUTOSCALER_CHECK = """
import json, os, sys
import ray
from realtime.batch_jobs import local_session_dir, remove_session_dir, start_ray, stop_local_autoscaler
from scripts.bench_batch import child_pids

def monitors():
    found = []
    for pid in child_pids(os.getpid()):
        try:
            if b"autoscaler/_private/monitor.py" in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(pid)
        except OSError:
            pass
    return found

start_ray(1, None)
session = local_session_dir()
before = monitors()
stop_local_autoscaler()
after = monitors()
still_runs = ray.get(ray.remote(lambda: 41 + 1).remote())
ray.shutdown()
remove_session_dir(session)
print(json.dumps({"before": before, "after": after, "still_runs": still_runs, "left": child_pids(os.getpid())}))
"""


def test_a_local_runtime_stops_its_autoscaler_monitor_before_shutting_down():
    """The monitor would hold ``ray.shutdown`` a second (it cannot stop gracefully once Ray's GCS is gone)."""
    result = subprocess.run([sys.executable, "-c", _AUTOSCALER_CHECK], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert len(seen["before"]) == 1 and seen["after"] == []
    assert seen["still_runs"] == 42 and seen["left"] == []


def _without_source(records: list[dict]) -> list[dict]:
    """Records less the source file's name, which differs between copies of one clip."""
    return [{key: value for key, value in record.items() if key != "source"} for record in records]


def test_ctrl_c_leaves_no_partial_output_and_a_rerun_finishes(tmp_path: Path, long_clip: Path):
    names = [f"clip{i}.mp4" for i in range(4)]
    _copies(long_clip, tmp_path / "in", names)
    output = tmp_path / "out"
    batch = _start_batch(str(tmp_path / "in"), str(output), "--workers", "1")
    _wait_for(lambda: (output / "clip0.mp4.jsonl").exists() and _temporaries(output))
    os.killpg(batch.pid, signal.SIGINT)
    stderr = batch.communicate(timeout=120)[1]
    assert batch.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert not _temporaries(output)
    finished = sorted(path.name for path in output.glob("*.jsonl"))
    assert finished and len(finished) < len(names)
    for path in output.glob("*.jsonl"):
        assert [record["frame"] for record in _records(path)] == list(range(LONG_FRAMES))
    statuses = {name: row["status"] for name, row in _summary(output).items()}
    assert {statuses[name[: -len(".jsonl")]] for name in finished} == {"done"}
    assert set(statuses.values()) == {"done", "interrupted"}
    kept = {path: path.stat().st_mtime_ns for path in output.glob("*.jsonl")}

    result = _batch(str(tmp_path / "in"), str(output), "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    statuses = {name: row["status"] for name, row in _summary(output).items()}
    assert statuses == {name: "skipped" if (output / f"{name}.jsonl") in kept else "done" for name in names}
    for name in names:
        assert [record["frame"] for record in _records(output / f"{name}.jsonl")] == list(range(LONG_FRAMES))


def test_a_list_file_names_videos_relative_to_itself_and_output_inside_input_is_left_out(tmp_path: Path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "b/z.avi", "out/x.mp4.annotated.mp4", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_videos(tmp_path, tmp_path / "out")
    assert [video.name for video in found] == ["a/x.mp4", "a/y.MOV", "b/z.avi"]
    listing = tmp_path / "a" / "list.txt"
    listing.write_text("# sessions\nx.mp4\n\n../b/z.avi\nx.mp4\n")
    found = find_videos(listing, tmp_path / "out")
    assert [(video.name, video.path) for video in found] == [("a/x.mp4", tmp_path / "a/x.mp4"),
                                                             ("b/z.avi", tmp_path / "b/z.avi")]


def test_stats_come_from_the_log_alone(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    faces = [{"id": 1, "label": "happy"}, {"id": 2, "label": "sad"}]
    records = [{"frame": 0, "t": 0.0, "faces": []}, {"frame": 1, "t": 0.5, "faces": faces},
               {"frame": 2, "t": 1.0, "faces": faces[:1]}]
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    stats = stats_from_log(log, ["happy", "sad", "neutral"])
    assert (stats.frames, stats.duration_s, stats.frames_with_faces, stats.tracks) == (3, 1.5, 2, 2)
    assert stats.label_shares == {"happy": pytest.approx(2 / 3, abs=1e-4), "sad": pytest.approx(1 / 3, abs=1e-4),
                                  "neutral": 0.0}


def test_user_errors_are_one_sentence_with_status_2(tmp_path: Path):
    output, no_videos, videos = tmp_path / "out", tmp_path / "empty", tmp_path / "in"
    no_videos.mkdir()
    videos.mkdir()
    (videos / "v.mp4").write_bytes(b"x")
    cases = [([str(tmp_path / "missing"), str(output)], f"input {tmp_path / 'missing'} does not exist"),
             ([str(no_videos), str(output)], f"input {no_videos} holds no videos"),
             ([str(videos), str(output), "--address", "127.0.0.1:1"],
              "cannot join the Ray cluster at 127.0.0.1:1: nothing answers there")]
    for args, expected in cases:
        result = _batch(*args)
        assert result.returncode == 2, result.stderr[-3000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
