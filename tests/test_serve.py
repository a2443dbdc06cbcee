"""serve.py, the HTTP API, as a program uses it: a real server process on a free loopback port, a real client (httpx).

Answers equal main.py --source PHOTO --json's, every bad request refused in one sentence with its status while
the server keeps serving, 16 clients at once with nothing lost or mixed up, privacy (strace: loopback only, no
file written, nothing spooled to disk), a clean stop on SIGINT and SIGTERM, and the start-up refusals.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from realtime.detector_model import ensure_detector_model
from tests.conftest import REPO, require, require_tool, run_cli
from tests.synth import gif, png_claiming
from tests.servers import ServerProcess, assert_stayed_local, free_port

PHOTOS = ("obama.jpg", "biden.jpg", "obama_and_biden.jpg", "two_people.jpg", "kit_with_rose.jpg")
MAX_BODY = 25 * 1024 * 1024


class Server(ServerProcess):
    """``python serve.py`` in a child process (optionally under a wrapper such as strace), with an httpx client."""

    program = "serve.py"
    health_path = "/health"

    def __init__(self, tmp: Path, wrapper: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> None:
        super().__init__(tmp, wrapper, args)
        self.client = httpx.Client(base_url=self.url, timeout=120, trust_env=False)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.client.close()
        return super().stop(signum)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    ensure_detector_model("short")
    ensure_detector_model("full")
    running = Server(tmp_path_factory.mktemp("serve"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def expected(media: Path) -> dict[str, dict]:
    """What main.py --source PHOTO --json prints for each shared photo, one process per photo as a user runs it."""
    records = {}
    for name in PHOTOS:
        result = run_cli("main.py", "--source", str(require(media / name)), "--json", timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        records[name] = json.loads(result.stdout)
    return records


def _post_raw(client: httpx.Client, data: bytes, content_type: str = "image/jpeg", path: str = "/detect",
              **params) -> httpx.Response:
    return client.post(path, content=data, headers={"Content-Type": content_type}, params=params)


def _post_form(client: httpx.Client, data: bytes, filename: str, field: str = "image", path: str = "/detect",
               **params) -> httpx.Response:
    return client.post(path, files={field: (filename, data, "image/jpeg")}, params=params)


def _assert_refused(response: httpx.Response, status: int, message: str) -> None:
    """The status, and a JSON body holding one sentence that says ``message``."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    detail = body["detail"]
    assert message in detail, detail
    assert "\n" not in detail and ". " not in detail and "Traceback" not in detail, detail


def test_health_names_the_model_its_classes_and_versions(server: Server):
    health = server.client.get("/health").json()
    card = json.loads((REPO / "model" / "happy_sad_neutral.json").read_text())
    assert health["status"] == "ok" and health["model"] == "happy_sad_neutral.tflite"
    assert health["classes"] == card["classes"] and health["detector"] == "auto" and health["workers"] >= 1
    assert health["limits"] == {"max_upload_mb": 25, "max_megapixels": 120}
    assert {"python", "mediapipe", "ai-edge-litert", "fastapi", "uvicorn"} <= set(health["versions"])
    assert server.banner.startswith(f"Expression detector API: {server.url}/detect")


def test_the_schema_is_served_and_no_page_loads_anything_from_outside(server: Server):
    schema = server.client.get("/openapi.json").json()
    assert {"/detect", "/annotate", "/health"} <= set(schema["paths"])
    body = schema["paths"]["/detect"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "multipart/form-data"} <= set(body)
    assert {"400", "413", "415", "422"} <= set(schema["paths"]["/detect"]["post"]["responses"])
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):  # FastAPI's own pages pull scripts from a CDN
        _assert_refused(server.client.get(page), 404, f"there is nothing at {page}")


def test_the_run_time_path_never_loads_tensorflow(server: Server):
    maps = Path(f"/proc/{server.pid}/maps").read_text()
    assert "ai_edge_litert" in maps  # the classifier's native library: the check reads the right process
    assert "/tensorflow/" not in maps and "libtensorflow" not in maps


@pytest.mark.parametrize("photo", PHOTOS)
def test_an_answer_is_what_main_py_prints_for_the_photo(server: Server, expected: dict, media: Path, photo: str):
    data = (media / photo).read_bytes()
    assert _post_raw(server.client, data, name=photo).json() == expected[photo]
    assert _post_form(server.client, data, photo).json() == expected[photo]
    if photo == "obama.jpg":  # the figure: the one smiling face answers happy
        assert [face["label"] for face in expected[photo]["faces"]] == ["happy"]


def test_a_form_upload_is_named_by_its_file_name_and_name_overrides_it(server: Server, expected: dict, media: Path):
    data = (media / "obama.jpg").read_bytes()
    assert _post_form(server.client, data, "C:\\Users\\me\\obama.jpg").json()["source"] == "obama.jpg"
    renamed = _post_form(server.client, data, "x.jpg", name="portrait.jpg").json()
    assert renamed == {**expected["obama.jpg"], "source": "portrait.jpg"}
    assert _post_raw(server.client, data).json() == {**expected["obama.jpg"], "source": "upload"}


@pytest.mark.parametrize("kind", ["png", "webp"])
def test_png_and_webp_are_read_as_main_py_reads_them(server: Server, media: Path, tmp_path: Path, kind: str):
    path = tmp_path / f"two_people.{kind}"
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if kind == "webp" else []  # 101: lossless
    cv2.imwrite(str(path), cv2.imread(str(media / "two_people.jpg")), params)
    printed = run_cli("main.py", "--source", str(path), "--json", timeout=300)
    assert printed.returncode == 0, printed.stderr[-2000:]
    answer = _post_raw(server.client, path.read_bytes(), f"image/{kind}", name=path.name).json()
    assert answer == json.loads(printed.stdout) and len(answer["faces"]) == 2


def test_annotate_answers_the_picture_main_py_draws(server: Server, media: Path, tmp_path: Path):
    photo = media / "two_people.jpg"
    shots = tmp_path / "shots"
    saved = run_cli("main.py", "--source", str(photo), "--no-display", "--screenshot-every", "1",
                    "--screenshot-dir", str(shots), timeout=300)
    assert saved.returncode == 0, saved.stderr[-2000:]
    drawn = cv2.imread(str(next(shots.glob("*.png"))))
    response = _post_raw(server.client, photo.read_bytes(), path="/annotate")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-faces"] == "2"
    answer = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(photo))
    assert answer.shape == drawn.shape == original.shape
    difference = np.abs(answer.astype(int) - drawn.astype(int)).mean()  # JPEG's loss alone
    assert difference < 2.0 < np.abs(drawn.astype(int) - original.astype(int)).max()



def _obama(media: Path) -> bytes:
    return (media / "obama.jpg").read_bytes()


BAD_BODIES = {
    "not an image": (lambda media: b"%PDF-1.7 not a photo", "image/jpeg", 400,
                     "a.jpg is not a JPEG, PNG or WebP image"),
    "cut short": (lambda media: _obama(media)[:20_000], "image/jpeg", 400,
                  "a.jpg is a damaged or cut-short JPEG file"),
    "damaged": (lambda media: _obama(media)[:2000] + bytes(30_000), "image/jpeg", 400,
                "a.jpg is a damaged or cut-short JPEG file"),
    "empty": (lambda media: b"", "image/jpeg", 400, "a.jpg is empty (0 bytes)"),
    "over the size limit": (lambda media: _obama(media) + bytes(MAX_BODY), "image/jpeg", 413,
                            "larger than the 25 MB the server reads"),
    "over the pixel limit": (lambda media: png_claiming(15000, 10000), "image/png", 413,
                             "a.jpg is 15000x10000 pixels, more than the 120 megapixels the server reads"),
    "decompression bomb": (lambda media: png_claiming(100000, 100000), "image/png", 413,
                           "a.jpg has more than the 120 megapixels the server reads"),
    "gif": (lambda media: gif(), "image/png", 415, "a.jpg is a GIF image; the server reads JPEG, PNG and WebP"),
    "text type": (lambda media: _obama(media), "text/plain", 415, "the request has Content-Type text/plain"),
    "no type": (lambda media: _obama(media), "", 415, "the request has no Content-Type"),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_a_bad_body_is_refused_in_one_sentence_and_the_server_keeps_serving(server: Server, media: Path, case: str):
    make, content_type, status, message = BAD_BODIES[case]
    headers = {"Content-Type": content_type} if content_type else {}
    response = server.client.post("/detect", content=make(media), headers=headers, params={"name": "a.jpg"})
    _assert_refused(response, status, message)
    assert server.client.post("/detect", files={"image": ("obama.jpg", _obama(media))}).json()["faces"]


def test_an_oversized_body_without_a_length_is_cut_off_at_the_limit(server: Server):
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to refuse it by up front
        for _ in range(30):
            yield bytes(1024 * 1024)
    response = server.client.post("/detect", content=chunks(), headers={"Content-Type": "image/jpeg"})
    _assert_refused(response, 413, "larger than the 25 MB the server reads")
    assert server.client.get("/health").status_code == 200


def test_bad_forms_and_requests_are_refused_in_one_sentence(server: Server, media: Path):
    data = _obama(media)
    _assert_refused(_post_form(server.client, data, "obama.jpg", field="photo"), 422,
                    "the multipart form has no field named image")
    boundary = "XyZ"
    cut = f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n".encode() + data
    _assert_refused(_post_raw(server.client, cut, f"multipart/form-data; boundary={boundary}"), 400,
                    "the multipart form is malformed or cut short")
    _assert_refused(_post_raw(server.client, data, "multipart/form-data"), 400, "names no boundary")
    many = {f"field{number}": "x" for number in range(20)}
    _assert_refused(server.client.post("/detect", data=many, files={"image": ("a.jpg", data)}), 400,
                    "the multipart form has 21 parts, more than the 16 the server reads")
    _assert_refused(_post_form(server.client, b"", "a.jpg"), 400, "a.jpg is empty (0 bytes)")
    _assert_refused(_post_form(server.client, bytes(MAX_BODY + 1), "big.jpg"), 413, "larger than the 25 MB")
    _assert_refused(_post_raw(server.client, data, name="n" * 1001), 422, "the request's name is not valid")
    _assert_refused(server.client.get("/detect"), 405, "GET /detect is not allowed")
    assert server.client.post("/detect", files={"image": ("obama.jpg", data)}).json()["faces"]


def test_sixteen_clients_at_once_each_get_their_own_photos_answer(server: Server, expected: dict, media: Path):
    photos = {name: (media / name).read_bytes() for name in PHOTOS}
    start = threading.Barrier(16)

    def client(number: int) -> list[tuple[str, dict, dict]]:
        answers = []
        with httpx.Client(base_url=server.url, timeout=300, trust_env=False) as own:
            start.wait()
            for round_ in range(3):
                photo = PHOTOS[(number + round_) % len(PHOTOS)]
                name = f"client{number}-{round_}-{photo}"
                response = _post_form(own, photos[photo], name) if number % 2 else \
                    _post_raw(own, photos[photo], name=name)
                assert response.status_code == 200, response.text
                answers.append((photo, name, response.json()))
        return answers

    with ThreadPoolExecutor(16) as pool:
        results = [answer for answers in pool.map(client, range(16)) for answer in answers]
    assert len(results) == 48
    for photo, name, answer in results:
        assert answer == {**expected[photo], "source": name}


def test_serving_contacts_only_loopback_writes_no_file_and_stops_on_sigterm(media: Path, tmp_path: Path,
                                                                           expected: dict):
    strace = require_tool("strace", "apt-get install strace")
    trace_path = tmp_path / "trace.log"
    traced = Server(tmp_path / "server", (strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,open,openat,creat",
                                          "-o", str(trace_path)))
    started = trace_path.stat().st_size
    big = cv2.imencode(".png", cv2.imread(str(media / "obama_and_biden.jpg")))[1].tobytes()
    assert len(big) > 2 * 1024 * 1024  # past the 1 MB at which python-multipart would spool a part to disk
    try:
        for photo in PHOTOS:
            assert _post_form(traced.client, (media / photo).read_bytes(), photo).json() == expected[photo]
        assert len(_post_form(traced.client, big, "big.png").json()["faces"]) == 2
        assert _post_raw(traced.client, big, "image/png", path="/annotate").status_code == 200
        _assert_refused(_post_form(traced.client, bytes(MAX_BODY + 1), "huge.jpg"), 413, "larger than the 25 MB")
    finally:
        status, stderr = traced.stop(signal.SIGTERM)
    assert status == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert_stayed_local(traced, trace_path.read_text(), started)


def _one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_an_address_not_of_this_machine_is_refused_in_one_sentence():
    _one_error_line(run_cli("serve.py", "--host", "203.0.113.7", timeout=120),
                    "--host 203.0.113.7 is not an address of this machine")


def test_a_port_in_use_is_refused_in_one_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_error_line(run_cli("serve.py", "--port", str(port), timeout=120),
                        f"port {port} on 127.0.0.1 is in use (another serve.py?)")


def test_a_missing_model_is_refused_in_one_sentence(tmp_path: Path):
    _one_error_line(run_cli("serve.py", "--port", str(free_port()), "--model", str(tmp_path / "none.tflite"),
                            timeout=120), "does not exist")


def test_ctrl_c_stops_the_server_cleanly(server: Server, media: Path):
    """Last in the file: it stops the module's server."""
    assert server.client.post("/detect", files={"image": ("obama.jpg", _obama(media))}).status_code == 200
    status, stderr = server.stop(signal.SIGINT)
    assert status == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "error" not in stderr.lower(), stderr[-3000:]
