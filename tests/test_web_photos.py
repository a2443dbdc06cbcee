"""The web page's photo path without a browser: uploads refused in one sentence, huge photos scaled, answers as
the Python API gives them (real model, real MediaPipe)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.web.photos import SHOWN_MAX_SIDE, PhotoRefused, analyze_photo, decode_photo, face_rows, fit_for_page
from realtime.web.service import WebService
from tests.synth import gif, png_claiming


@pytest.fixture(scope="module")
def service() -> Iterator[WebService]:
    opened = WebService()
    yield opened
    opened.close()



@pytest.mark.parametrize("data, message", [
    (b"", "a.jpg is empty (0 bytes)"),
    (b"%PDF-1.7 not a photo", "a.jpg is not a JPEG, PNG or WebP image"),
    (gif(), "a.jpg is a GIF image; the page reads JPEG, PNG and WebP"),
    (png_claiming(15000, 10000), "a.jpg is 15000x10000 pixels, more than the 120 megapixels the page reads"),
    (png_claiming(100000, 100000), "a.jpg has more than the 120 megapixels the page reads"),
], ids=["empty", "not an image", "gif", "too many pixels", "decompression bomb"])
def test_uploads_the_page_cannot_read_are_refused_in_one_sentence(data: bytes, message: str):
    with pytest.raises(PhotoRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_photo("a.jpg", data)


@pytest.mark.parametrize("keep", [20_000, 2 / 3], ids=["first 20 KB", "two thirds"])
def test_a_truncated_photo_is_named_as_damaged(media: Path, keep: float):
    data = (media / "obama.jpg").read_bytes()
    cut = int(keep) if keep > 1 else int(len(data) * keep)
    with pytest.raises(PhotoRefused, match="obama.jpg is a damaged or cut-short JPEG file"):
        decode_photo("obama.jpg", data[:cut])


def test_photos_are_read_as_the_desktop_tool_reads_them(media: Path):
    data = (media / "two_people.jpg").read_bytes()
    assert np.array_equal(decode_photo("two_people.jpg", data), cv2.imread(str(media / "two_people.jpg")))


def test_only_photos_larger_than_the_page_shows_are_scaled():
    small = np.zeros((300, 400, 3), np.uint8)
    assert fit_for_page(small) is small
    assert fit_for_page(np.zeros((10000, 5000, 3), np.uint8)).shape == (SHOWN_MAX_SIDE, SHOWN_MAX_SIDE // 2, 3)


def test_an_answer_matches_the_python_api_and_the_log_format(service: WebService, media: Path):
    result = analyze_photo(service, "two_people.jpg", (media / "two_people.jpg").read_bytes())
    photo = cv2.imread(str(media / "two_people.jpg"))
    faces = sorted(service.detector.detect(photo), key=lambda face: face.box[0])
    assert [face.probs for face in result.faces] == [face.probs for face in faces]
    assert result.summary == "2 faces found, numbered from left to right."
    assert result.scale_note is None
    assert result.record["source"] == "two_people.jpg"
    assert [face["box"] for face in result.record["faces"]] == [list(face.box) for face in faces]
    assert cv2.imdecode(np.frombuffer(result.annotated_jpeg, np.uint8), cv2.IMREAD_COLOR).shape == photo.shape
    rows = face_rows(result.faces, result.classes)
    assert [row["confidence"] for row in rows] == [f"{face.confidence:.0%}" for face in faces]
    assert set(rows[0]) == {"face", "label", "confidence", *service.classes}


def test_the_pictures_faces_carry_the_tables_numbers(service: WebService, media: Path):
    """The page's picture numbers each face where the table does; the desktop's annotate() draws no numbers."""
    data = (media / "two_people.jpg").read_bytes()
    result = analyze_photo(service, "two_people.jpg", data)
    shown = cv2.imdecode(np.frombuffer(result.annotated_jpeg, np.uint8), cv2.IMREAD_COLOR)
    plain = service.detector.annotate(cv2.imread(str(media / "two_people.jpg")), result.faces)
    for face in result.faces:
        x, y, w, h = face.box
        corner = (slice(y + h - 30, y + h), slice(x, x + 30))
        # A dark tag with light digits sits in the box's lower left corner of the page's picture alone.
        assert np.abs(shown[corner].astype(int) - plain[corner].astype(int)).mean() > 20
        assert (shown[corner].max(axis=2) > 200).any() and (shown[corner].max(axis=2) < 60).mean() > 0.3


def test_a_photo_without_a_face_says_so(service: WebService):
    blank = cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
    result = analyze_photo(service, "wall.png", blank)
    assert result.faces == [] and result.summary == "No face found in this photo."
