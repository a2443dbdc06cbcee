"""The Python API as a script uses it: ``from realtime import ExpressionDetector``, with real MediaPipe, the
shipped models, real photos and real video decode."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.card import CardError
from model.errors import ExpressionDetectorError
from realtime import ExpressionDetector, Face
from realtime.bench import BenchError
from realtime.classifier import ModelError
from realtime.detector import DetectorError
from realtime.detector_model import PROXY_VARIABLES, DetectorModelError
from realtime.sinks import OutputError
from realtime.sources import SourceError
from tests.conftest import COMMITTED_MODEL, MEDIA, REPO, SHARED


@pytest.fixture(scope="module")
def detector():
    with ExpressionDetector() as shared:
        yield shared


def test_detect_gives_typed_untracked_faces_of_a_still(detector: ExpressionDetector, media: Path):
    image = cv2.imread(str(media / "obama_and_biden.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 2, "both faces, with no flag: the two detector ranges are merged for stills"
    for face in faces:
        assert isinstance(face, Face) and face.track_id is None
        x, y, w, h = face.box
        assert all(isinstance(v, int) for v in face.box) and h > 0
        assert 0 <= x < x + w <= image.shape[1] and 0 <= y < y + h <= image.shape[0]
        assert 0.5 <= face.score <= 1.0
        assert set(face.probs) == set(detector.classes) and sum(face.probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert face.label == max(face.probs, key=face.probs.get) and face.confidence == face.probs[face.label]
        assert face.probs == face.raw_probs, "a still is not smoothed"
        assert face.uncertain == (face.confidence < detector.settings.min_confidence)
    again = detector.detect(image)
    assert [(f.box, f.probs) for f in again] == [(f.box, f.probs) for f in faces], "no history between stills"
    gray = detector.detect(cv2.imread(str(media / "two_people.jpg"), cv2.IMREAD_GRAYSCALE))
    assert len(gray) == 2
    annotated = detector.annotate(image, faces)
    assert annotated.shape == image.shape and not np.array_equal(annotated, image)
    assert np.array_equal(image, cv2.imread(str(media / "obama_and_biden.jpg"))), "the input stays untouched"


def test_stream_tracks_and_smooths(detector: ExpressionDetector, media: Path):
    results = []
    for result in detector.stream(media / "short_hamilton_clip.mp4"):
        results.append(result)
        if result.index == 60:
            break
    assert [r.index for r in results] == list(range(61))
    assert results[30].timestamp_s == pytest.approx(30 / 29.97, abs=1e-3)
    assert all(r.annotated is not None and r.annotated.shape == r.frame.image.shape for r in results)
    faces = [face for r in results for face in r.faces]
    assert faces and all(face.track_id is not None for face in faces)
    assert len({face.track_id for face in faces}) < len(faces) / 3, "the same faces keep their ids"
    assert any(face.probs != face.raw_probs for face in faces), "probabilities are smoothed over time"


def test_options_mirror_the_command_line(media: Path):
    image = cv2.imread(str(media / "two_people.jpg"))
    with ExpressionDetector(model=COMMITTED_MODEL, detector="short", smoothing=0, min_confidence=0.99) as strict:
        faces = strict.detect(image)
        assert strict.classes == ["happy", "sad"]
        assert len(faces) == 2 and all(face.uncertain for face in faces)
        assert strict.detect(cv2.imread(str(media / "obama_and_biden.jpg"))) == [], \
            "the short-range model alone misses both faces"


def test_stills_get_no_frame_rate_drawn(media: Path, tmp_path: Path):
    """The FPS counter means nothing for photos: the second photo of a folder carries only the face count."""
    for name in ("obama.jpg", "two_people.jpg"):
        (tmp_path / name).symlink_to(media / name)
    with ExpressionDetector(show_stats=True) as detector:
        results = list(detector.stream(tmp_path))
        expected = detector.annotate(results[1].frame.image, results[1].faces, fps=None)
    assert [r.frame.source for r in results] == ["obama.jpg", "two_people.jpg"]
    assert np.array_equal(results[1].annotated, expected)


def test_the_stats_line_hides_no_face(media: Path):
    """Clip frames 229 and 250 have a face and its label in the top-left corner, where the line used to go: the
    pixels the stats line changes must touch no face box and no label."""
    checked = 0
    with ExpressionDetector() as detector:
        for result in detector.stream(media / "short_hamilton_clip.mp4", annotate=False):
            if result.index in (229, 250):
                image = result.frame.image
                faces_only = detector.annotate(image, result.faces)
                with_stats = faces_only.copy()
                detector.annotator.draw_stats(with_stats, result.faces, 30.0)
                stats = np.any(with_stats != faces_only, axis=2)
                taken = np.any(faces_only != image, axis=2)  # boxes and filled label backgrounds
                for x, y, w, h in (face.box for face in result.faces):
                    taken[max(y, 0) : y + h, max(x, 0) : x + w] = True
                assert taken[:40, :120].any(), "the top-left corner is taken in this frame"
                assert stats.sum() > 500 and not (stats & taken).any()
                checked += 1
            if result.index == 250:
                break
    assert checked == 2


def test_closing_restores_the_host_proxy_environment(media: Path):
    """MediaPipe's metrics are kept on the machine only while a detector is open; the host's HTTPS comes back.
    A process of its own, as a host program is: no other detector of this test session is open in it."""
    code = f"""
import os
import cv2
from realtime import ExpressionDetector
from realtime.detector_model import PROXY_VARIABLES

before = {{name: os.environ.get(name) for name in PROXY_VARIABLES}}
with ExpressionDetector() as detector:
    detector.detect(cv2.imread({str(media / "obama.jpg")!r}))
    next(iter(detector.stream({str(media / "short_hamilton_clip.mp4")!r})))
    blocked = os.environ["https_proxy"]
after = {{name: os.environ.get(name) for name in PROXY_VARIABLES}}
print(blocked != before["https_proxy"], after == before)
"""
    environment = {name: value for name, value in os.environ.items() if name not in PROXY_VARIABLES}
    environment |= {"https_proxy": "http://proxy.example:3128", "NO_PROXY": "localhost"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True"]


def test_every_error_shares_one_base_class(tmp_path: Path):
    for error in (SourceError, ModelError, DetectorError, DetectorModelError, OutputError, CardError, BenchError):
        assert issubclass(error, ExpressionDetectorError), error
    with pytest.raises(ExpressionDetectorError, match="does not exist"):
        ExpressionDetector(model=tmp_path / "missing.tflite")
    with ExpressionDetector() as detector, pytest.raises(ExpressionDetectorError, match="does not exist"):
        next(iter(detector.stream(tmp_path / "missing.mp4")))
    with pytest.raises(ExpressionDetectorError, match="unknown detector range"):
        ExpressionDetector(detector="medium").detect(np.zeros((64, 64, 3), np.uint8))


def test_library_code_reports_through_logging_not_print():
    """``print`` belongs to the front ends; a library module that printed would write into its host's stdout."""
    front_ends = {"bench.py"}  # python -m realtime.bench is a command of its own
    printing = []
    for module in sorted((REPO / "realtime").glob("*.py")):
        if module.name in front_ends:
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{module.name}:{node.lineno}")
    assert printing == []


def _python_example(text: str) -> str | None:
    """The first ```python block of a "Use it from Python" section, if the text has one."""
    section = re.search(r"^#+ Use it from Python\n(.*?)(?=^#+ |\Z)", text, re.S | re.M)
    block = section and re.search(r"```python\n(.*?)```", section.group(1), re.S)
    return block.group(1) if block else None


def test_the_readme_example_runs_as_written(tmp_path: Path, media: Path):
    """Run from a checkout beside ../shared, as the README's commands are; it writes annotated.jpg there."""
    example = _python_example((REPO / "README.md").read_text())
    assert example, "no 'Use it from Python' example found in README.md"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    assert (checkout / "../shared/media").resolve() == MEDIA.resolve()
    assert len(example.strip().splitlines()) <= 12
    result = subprocess.run([sys.executable, "-c", example], cwd=checkout, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", "a library run leaves stderr to its host"
    lines = result.stdout.splitlines()
    assert len(lines) >= 2 and all(line.split()[0] in ("happy", "sad", "neutral") for line in lines[:2])
    assert cv2.imread(str(checkout / "annotated.jpg")).shape == cv2.imread(str(media / "obama_and_biden.jpg")).shape
