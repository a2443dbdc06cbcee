"""--sample-fps: R frames analysed per second of source time, chosen by timestamp; real video, real pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import pytest

from realtime.api import ExpressionDetector
from realtime.sampling import FrameSampler
from tests.conftest import run_cli


def test_the_sampler_takes_the_first_frame_of_each_slot_by_timestamp():
    at_30 = FrameSampler(10.0)
    assert [i for i in range(30) if at_30.wants(i / 30)] == list(range(0, 30, 3))
    uneven = FrameSampler(2.0)  # a variable frame rate: gaps of 0.1 to 0.7 s
    times = [0.0, 0.1, 0.3, 0.45, 0.5, 1.2, 1.3, 1.6, 2.05]
    assert [t for t in times if uneven.wants(t)] == [0.0, 0.5, 1.2, 1.6, 2.05]
    every = FrameSampler(None)
    assert all(every.wants(i / 30) for i in range(10))
    with pytest.raises(ValueError):
        FrameSampler(0.0)


def _log(args: list[str], log: Path) -> list[dict]:
    result = run_cli("main.py", *args, "--no-display", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_sampled_log_has_one_record_per_analysed_frame_and_the_output_every_frame(tmp_path: Path, media: Path):
    clip = media / "short_hamilton_clip.mp4"
    records = _log(["--source", str(clip), "--sample-fps", "5"], tmp_path / "five.jsonl")
    duration = 275 / 29.97
    assert len(records) == math.ceil(duration * 5)
    gaps = [b["t"] - a["t"] for a, b in zip(records, records[1:])]
    assert min(gaps) >= 0.2 - 1 / 29.97 and max(gaps) <= 0.2 + 1 / 29.97
    # The same records when every frame is also decoded for an output video, which holds all 275 frames.
    output = tmp_path / "five.mp4"
    with_output = _log(["--source", str(clip), "--sample-fps", "5", "--output", str(output)],
                       tmp_path / "with_output.jsonl")
    assert with_output == records
    with av.open(str(output)) as written:
        assert sum(1 for _ in written.decode(video=0)) == 275


def test_a_rate_above_the_frame_rate_analyses_every_frame_exactly_as_without_it(tmp_path: Path, media: Path):
    clip = media / "short_hamilton_clip.mp4"
    plain = tmp_path / "plain.jsonl"
    fast = tmp_path / "fast.jsonl"
    _log(["--source", str(clip)], plain)
    _log(["--source", str(clip), "--sample-fps", "1000"], fast)
    assert plain.read_bytes() == fast.read_bytes()


def test_the_python_stream_samples_as_main_does(tmp_path: Path, media: Path):
    clip = media / "short_hamilton_clip.mp4"
    records = _log(["--source", str(clip), "--sample-fps", "2"], tmp_path / "two.jsonl")
    with ExpressionDetector() as detector:
        streamed = [(result.index, [face.label for face in result.faces])
                    for result in detector.stream(clip, annotate=False, sample_fps=2)]
    assert streamed == [(record["frame"], [face["label"] for face in record["faces"]]) for record in records]


def test_batch_samples_each_video_as_main_does(tmp_path: Path, media: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "talk.mp4").write_bytes((media / "short_hamilton_clip.mp4").read_bytes())
    result = run_cli("batch.py", str(inputs), str(tmp_path / "out"), "--sample-fps", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    main_log = _log(["--source", str(inputs / "talk.mp4"), "--sample-fps", "4"], tmp_path / "main.jsonl")
    assert (tmp_path / "out" / "talk.mp4.jsonl").read_text() == (tmp_path / "main.jsonl").read_text()
    assert len(main_log) == math.ceil(275 / 29.97 * 4)
    refused = run_cli("batch.py", str(inputs), str(tmp_path / "out"))  # resuming at another rate is refused
    assert refused.returncode == 2 and "the sample_fps differs" in refused.stderr
