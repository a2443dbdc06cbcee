"""A request's photo: its body read into memory under a size cap, from a raw image or a multipart form field.

Nothing is written to disk. Starlette's ``request.form()`` hands multipart files to python-multipart,
whose parts roll over into temporary files past 1 MB; so the body is read here, capped, into one bytes
object, and the form is split here too (RFC 7578: parts between ``--boundary`` lines, each with its own
headers). Every refusal is an ``ApiError``: an HTTP status and one sentence.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from pathlib import PurePosixPath

from starlette.requests import ClientDisconnect, Request

from model.errors import ExpressionDetectorError
from realtime.web.photos import MAX_UPLOAD_MB

MAX_BODY_BYTES = MAX_UPLOAD_MB * 1024 * 1024  # the photo itself: the page's limit (Streamlit counts MB so)
FORM_OVERHEAD_BYTES = 64 * 1024  # a multipart body adds boundaries and part headers around the photo
# An oversized body is read on and thrown away up to this much, so that the client, still sending, gets to
# read the 413 rather than a reset connection; past it the connection is simply closed.
DRAIN_BYTES = 4 * MAX_BODY_BYTES
BODY_TIMEOUT_S = 60.0  # a client that takes longer to send one photo holds a slot others wait for
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
FORM_TYPE = "multipart/form-data"
FIELD = "image"
NAME_MAX_CHARS = 255
# Parts of a form looked at: the form is split on the event loop, so a body of thousands of tiny parts must not
# cost seconds of parsing there.
MAX_PARTS = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ApiError(ExpressionDetectorError):
    """A request the API refuses: the HTTP status to answer with, and one sentence saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """The photo's bytes and its name, where the client gave one (None otherwise)."""

    data: bytes
    name: str | None


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case; refused (415) unless an image or a form."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in (*IMAGE_TYPES, FORM_TYPE):
        shown = f"Content-Type {kind}" if kind else "no Content-Type"
        raise ApiError(415, f"the request has {shown}; send the photo as the body with Content-Type image/jpeg, "
                            f"image/png or image/webp, or as the field {FIELD} of a multipart form "
                            f"(curl -F {FIELD}=@photo.jpg)")
    return kind


def _too_large() -> ApiError:
    return ApiError(413, f"the upload is larger than the {MAX_UPLOAD_MB} MB the server reads; send a smaller photo")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body in memory, at most ``limit`` bytes (413 past it, 408 after ``BODY_TIMEOUT_S``)."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                too_large = too_large or size > limit
                if too_large and size > DRAIN_BYTES:
                    break
                if not too_large:
                    chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the upload took longer than {BODY_TIMEOUT_S:g} s to arrive; send it again") from None
    except ClientDisconnect:
        raise ApiError(400, "the client closed the connection before the upload was complete") from None
    if too_large:
        raise _too_large()
    return b"".join(chunks)


def clean_name(name: str | None) -> str | None:
    """A client's file name as a record may show it: the last path component, no control characters."""
    if not name:
        return None
    shown = _CONTROL.sub("", PurePosixPath(name.replace("\\", "/")).name).strip()
    return shown[:NAME_MAX_CHARS] or None


async def read_upload(request: Request) -> Upload:
    """The photo of a POST: the body itself for an image type, the field ``image`` of a multipart form."""
    kind = media_type(request)
    if kind != FORM_TYPE:
        return Upload(await read_body(request, MAX_BODY_BYTES), None)
    boundary = _boundary(request.headers["content-type"])
    body = await read_body(request, MAX_BODY_BYTES + FORM_OVERHEAD_BYTES)
    data, filename = form_field(body, boundary, FIELD)
    if len(data) > MAX_BODY_BYTES:
        raise _too_large()
    return Upload(data, clean_name(filename))


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ApiError(400, "the multipart form's Content-Type names no boundary")
    return boundary.encode("latin-1", "replace")


def _part_headers(head: bytes) -> Message:
    return BytesHeaderParser(policy=HTTP).parsebytes(head + b"\r\n\r\n")


def form_field(body: bytes, boundary: bytes, field: str) -> tuple[bytes, str | None]:
    """The content and file name of the form's field ``field``: 400 for a malformed form, 422 where it is absent.

    Parts are split on ``CRLF--boundary`` (RFC 7578, RFC 2046 section 5.1.1); the body must end with the
    closing ``--boundary--``, so a form cut short is refused rather than read as a shorter photo.
    """
    delimiter = b"\r\n--" + boundary
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 2 or not pieces[-1].startswith(b"--"):
        raise ApiError(400, "the multipart form is malformed or cut short (no closing boundary)")
    if len(pieces) - 2 > MAX_PARTS:
        raise ApiError(400, f"the multipart form has {len(pieces) - 2} parts, more than the {MAX_PARTS} the server "
                            f"reads; send the photo as the field {field} alone")
    for piece in pieces[1:-1]:
        head, separator, content = piece.partition(b"\r\n\r\n")
        if not separator:
            raise ApiError(400, "the multipart form is malformed (a part without headers)")
        headers = _part_headers(head.lstrip(b" \t").removeprefix(b"\r\n"))
        if headers.get_param("name", header="content-disposition") == field:
            return content, headers.get_filename()
    raise ApiError(422, f"the multipart form has no field named {field}; send the photo as that field "
                        f"(curl -F {field}=@photo.jpg)")
