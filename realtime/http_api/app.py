"""The HTTP API's routes: POST /detect (the JSON record), POST /annotate (the drawn picture), GET /health.

Every answer comes from the same ExpressionDetector as ``main.py``: a photo is decoded as the web page
decodes uploads (``realtime.web.photos.decode_photo``: same limits, same one-sentence refusals), its
faces found by ``ExpressionDetector.detect`` and written by ``face_record``, so ``/detect`` answers
exactly what ``main.py --source PHOTO --json`` prints. Every error is JSON, ``{"detail": "one sentence"}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
from importlib import metadata
from pathlib import PurePath
from typing import Any, Callable

import cv2
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from realtime.api import ExpressionDetector
from realtime.http_api.pool import DetectorPool
from realtime.http_api.uploads import FIELD, IMAGE_TYPES, ApiError, clean_name, read_upload
from realtime.sinks import face_record
from realtime.types import Frame
from realtime.web.photos import (
    JPEG_QUALITY,
    MAX_MEGAPIXELS,
    MAX_UPLOAD_MB,
    PhotoFormatRefused,
    PhotoRefused,
    PhotoTooLarge,
    decode_photo,
)

log = logging.getLogger(__name__)

UNNAMED = "upload"  # the record's source where the client named no file
READER = "the server"  # who the photo refusals say reads photos
# Requests whose bodies may be in memory at once, per worker: the rest wait before their body is read, so
# memory stays bounded (8 x 25 MB at most with two workers) however many clients connect.
PENDING_PER_WORKER = 4
ENDPOINTS = "POST /detect, POST /annotate, GET /health and GET /openapi.json"
PACKAGES = ("mediapipe", "ai-edge-litert", "opencv-contrib-python", "numpy", "fastapi", "uvicorn")


class FaceRecord(BaseModel):
    """One face, as ``main.py --json`` writes it."""

    id: int | None = Field(description="track id: always null for a photo")
    box: list[int] = Field(description="x, y, width, height in the photo's pixels")
    score: float = Field(description="the face detector's confidence that this is a face")
    label: str
    probs: dict[str, float] = Field(description="every class's probability, in the model card's order")
    uncertain: bool = Field(description="the label's probability is below the model card's min_confidence")
    raw_label: str
    raw_probs: dict[str, float]


class PhotoRecord(BaseModel):
    """The record of one photo: the one ``realtime.sinks.face_record`` writes for main.py, web.py and batch.py."""

    source: str = Field(description=f"the photo's name (?name= or the form's file name), else {UNNAMED!r}")
    frame: int
    t: float | None = Field(description="null: a photo has no time")
    faces: list[FaceRecord] = Field(description="every face, left to right")


class ErrorBody(BaseModel):
    detail: str = Field(description="one sentence saying what is wrong")


class Health(BaseModel):
    status: str
    model: str
    classes: list[str]
    detector: str
    workers: int
    limits: dict[str, int]
    versions: dict[str, str]


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
PHOTO_BODY = {"requestBody": {"required": True, "content": {
    **{kind: _IMAGE_BODY for kind in IMAGE_TYPES},
    "multipart/form-data": {"schema": {"type": "object", "required": [FIELD],
                                       "properties": {FIELD: {"type": "string", "format": "binary"}}}}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "not an image, damaged or cut short, empty, or a malformed form"},
    408: {"model": ErrorBody, "description": "the body took too long to arrive"},
    413: {"model": ErrorBody, "description": f"over {MAX_UPLOAD_MB} MB or {MAX_MEGAPIXELS} megapixels"},
    415: {"model": ErrorBody, "description": "a Content-Type, or an image format, other than JPEG, PNG or WebP"},
    422: {"model": ErrorBody, "description": f"a multipart form without the field {FIELD}, or a bad query parameter"},
    500: {"model": ErrorBody, "description": "the server failed on this photo (logged); it keeps serving"},
}
NAME_QUERY = Query(None, max_length=1000, description="the photo's name for the record (default: the form's "
                                                      f"file name, else {UNNAMED!r})")


def photo_frame(data: bytes, name: str | None) -> Frame:
    """The uploaded photo as ``main.py`` would frame it from a file of that name (or a refusal)."""
    image = decode_photo(name or f"the {UNNAMED}", data, READER)
    source = name or UNNAMED
    return Frame(image, 0, 0.0, PurePath(source).stem or UNNAMED, source=source, is_still=True)


def detect_record(detector: ExpressionDetector, data: bytes, name: str | None) -> dict:
    """What ``main.py --source NAME --json`` prints for this photo."""
    frame = photo_frame(data, name)
    return face_record(frame, detector.detect(frame.image))


def annotated_jpeg(detector: ExpressionDetector, data: bytes, name: str | None) -> tuple[bytes, int]:
    """The photo drawn as ``main.py``'s window and screenshots draw it (JPEG), and how many faces it has."""
    frame = photo_frame(data, name)
    faces = detector.detect(frame.image)
    picture = detector.annotate(frame.image, faces)
    return cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes(), len(faces)


def _refusal_status(refusal: PhotoRefused) -> int:
    if isinstance(refusal, PhotoTooLarge):
        return 413
    if isinstance(refusal, PhotoFormatRefused):
        return 415
    return 400


async def answer_photo(request: Request, pool: DetectorPool, pending: asyncio.Semaphore, name: str | None,
                       job: Callable[[ExpressionDetector, bytes, str | None], Any]) -> Any:
    """Read the request's photo and run ``job`` on it with a free detector; every failure as an ``ApiError``."""
    async with pending:
        upload = await read_upload(request)
        shown = clean_name(name) or upload.name
        try:
            return await pool.run(lambda detector: job(detector, upload.data, shown))
        except PhotoRefused as refusal:
            raise ApiError(_refusal_status(refusal), str(refusal)) from None
        except Exception as error:  # the server stays up; the traceback goes to the log, not to the client
            log.exception("failed on a photo (%s)", shown or UNNAMED)
            raise ApiError(500, f"the server failed on this photo ({type(error).__name__}); it is logged") from None


@functools.cache
def versions() -> dict[str, str]:
    """Looked up once: the installed packages do not change under a running server."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _http_error_message(request: Request, status: int) -> str:
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return f"there is nothing at {request.url.path}; this server answers {ENDPOINTS}"
    if status == 405:
        return f"{where} is not allowed; this server answers {ENDPOINTS}"
    return f"{where} failed with HTTP status {status}"


def _validation_message(error: RequestValidationError) -> str:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
    return f"the request's {where or 'input'} is not valid ({first.get('msg', 'invalid')})"


def add_error_handlers(app: FastAPI) -> None:
    """Every error answer in one shape, ``{"detail": "one sentence"}``, FastAPI's own 404, 405 and 422 too."""
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, _http_error_message(request, error.status_code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))


def create_app(pool: DetectorPool) -> FastAPI:
    """The API over ``pool``. No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and nothing
    served here loads anything from outside this server; /openapi.json is the machine-readable schema."""
    app = FastAPI(title="Expression detector", version="1", docs_url=None, redoc_url=None,
                  description="Faces and their expressions in photos, by the same detector as main.py.")
    pending = asyncio.Semaphore(PENDING_PER_WORKER * pool.workers)
    add_error_handlers(app)

    @app.post("/detect", response_model=None, openapi_extra=PHOTO_BODY,
              responses={200: {"model": PhotoRecord, "description": "the record main.py --json prints"}, **ERRORS})
    async def detect(request: Request, name: str | None = NAME_QUERY) -> JSONResponse:
        """Every face of the photo with its expression: exactly the record ``main.py --source PHOTO --json`` prints."""
        return JSONResponse(await answer_photo(request, pool, pending, name, detect_record))

    @app.post("/annotate", response_model=None, openapi_extra=PHOTO_BODY, response_class=Response,
              responses={200: {"content": {"image/jpeg": {}}, "description": "the annotated photo (JPEG); "
                                                                            "X-Faces: how many faces"}, **ERRORS})
    async def annotate(request: Request, name: str | None = NAME_QUERY) -> Response:
        """The photo with every face's box and ``label NN%`` drawn as main.py draws them, as a JPEG."""
        jpeg, faces = await answer_photo(request, pool, pending, name, annotated_jpeg)
        return Response(jpeg, media_type="image/jpeg", headers={"X-Faces": str(faces)})

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """The server is up: its model, classes, detector, workers, limits and library versions."""
        return Health(status="ok", model=pool.model.name, classes=pool.classes, detector=pool.detector_range,
                      workers=pool.workers, limits={"max_upload_mb": MAX_UPLOAD_MB, "max_megapixels": MAX_MEGAPIXELS},
                      versions=versions())

    return app
