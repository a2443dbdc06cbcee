"""Batch jobs: every video of a folder or list through the live pipeline on Ray, one whole video per task.

A video is the unit of work because tracking needs its frames in order. Each Ray worker process keeps one
``ExpressionDetector`` per set of options (the model is loaded once, not per video) and sends whole videos
through ``ExpressionDetector.run`` into the sinks ``main.py`` uses (``JsonlSink``, ``VideoSink``), so every log
is ``main.py --log``'s record for record.

Nothing lost, nothing half-written:

- every output is written under a temporary name beside it (``.NAME.TOKEN.part.EXT``), synced, and renamed
  when complete, the log last: a video whose log (and annotated video, when asked for) exists under its final
  name is complete, and a rerun skips it;
- a worker process that dies mid-video has its task retried by Ray on another worker; the temporaries of
  attempts that never finished are swept when the job ends (and when the next one starts);
- Ctrl-C or SIGTERM cancels the running videos (each worker finalizes and deletes its own temporaries), the
  summary lists them as interrupted, and a rerun completes them.

INPUT and OUTPUT must be at the same paths on every node of a cluster (a shared mount); the code travels with
the job (Ray's ``working_dir``), the Python packages must be installed on every node.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
import ray.exceptions

from model.errors import ExpressionDetectorError
from realtime.api import ExpressionDetector
from realtime.classifier import ExpressionClassifier
from realtime.detector import TELEMETRY_SINK_PROXY, resolve_range
from realtime.detector_model import ensure_detector_model
from realtime.native import quiet_native
from realtime.pipeline import Sink, Terminated, signals_deferred
from realtime.sinks import JsonlSink, VideoSink
from realtime.sources import VideoFileSource
from realtime.timeline import TimelineSink

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".ts", ".3gp"})
SUMMARY_NAME = "summary.csv"
OPTIONS_NAME = "batch_options.json"
TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.part\.[A-Za-z0-9]+$")
# A video whose worker dies this many times more is recorded as failed rather than retried for ever (a file
# that crashes the decoder every time must not stall the job).
WORKER_DEATH_RETRIES = 3
# How long cancelled videos get to finalize and delete their temporaries after Ctrl-C before Ray is shut down.
CANCEL_GRACE_S = 10.0
# What steers plain HTTP in this process and the processes it starts (see _cloud_probes_blocked).
HTTP_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY")
# How long a cluster address gets to accept a connection before the job gives up on it.
ADDRESS_CHECK_TIMEOUT_S = 5.0
# LiteRT and FFmpeg decoding threads per worker (one pipeline per core: more threads only compete with the
# other workers; ExpressionClassifier's default is 2 and FFmpeg's one per core, for a single pipeline).
WORKER_THREADS = 1
# The local runtime's shared-memory object store: tasks pass only small records, so Ray's minimum suffices.
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024

DONE, PARTIAL, FAILED, SKIPPED, INTERRUPTED = "done", "partial", "failed", "skipped", "interrupted"
INTERRUPTED_REASON = "the job was interrupted before this video finished; a rerun processes it"


class BatchError(ExpressionDetectorError):
    """An input, output or cluster address that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Video:
    """One video to process: its absolute path and the relative name its outputs and summary row carry."""

    path: Path
    name: str


@dataclass(frozen=True)
class DetectorOptions:
    """What ``ExpressionDetector`` is built with; the same values as ``main.py``'s options.

    ``model`` is relative to the project when it lies inside it, so a cluster's shipped copy of the code finds it.
    """

    model: str
    detector: str = "auto"
    smoothing: float = 0.3
    min_confidence: float | None = None
    show_stats: bool = False
    show_ids: bool = False
    sample_fps: float | None = None  # analysed frames per second of source time; None: every frame


@dataclass(frozen=True)
class JobOptions:
    output: Path  # absolute, as workers elsewhere need it
    detector: DetectorOptions
    output_video: bool = False
    output_as_given: str = ""  # OUTPUT as the user typed it, for messages
    timeline: bool = False  # also <name>.timeline.csv and its chart <name>.timeline.png, as main.py --timeline

    @property
    def shown_output(self) -> str:
        return self.output_as_given or str(self.output)


@dataclass(frozen=True)
class VideoStats:
    """A video's summary, computed from its log alone, so a skipped video's row matches a processed one's."""

    frames: int
    duration_s: float
    frames_with_faces: int
    tracks: int
    label_shares: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoResult:
    name: str
    status: str
    reason: str = ""
    stats: VideoStats | None = None


@dataclass
class BatchReport:
    """How a job went: one result per video in input order, and the time Ray took to start, apart."""

    results: list[VideoResult]
    ray_startup_s: float
    processing_s: float
    interrupted: bool

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def frames(self) -> int:
        return sum(r.stats.frames for r in self.results if r.stats is not None and r.status in (DONE, PARTIAL))


# ---------------------------------------------------------------------------------------------------- inputs


def find_videos(source: Path, output: Path) -> list[Video]:
    """The videos of a folder (searched recursively, OUTPUT left out), of a text file listing paths, or one video."""
    if source.is_dir():
        videos = _videos_in_folder(source, output)
    elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        videos = [Video(Path(os.path.abspath(source)), source.name)]
    elif source.is_file():
        videos = _videos_in_list(source)
    else:
        raise BatchError(f"input {source} does not exist; give a folder of videos or a text file listing them")
    if not videos:
        raise BatchError(f"input {source} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def _videos_in_folder(folder: Path, output: Path) -> list[Video]:
    """Every video under ``folder``, except earlier outputs when OUTPUT lies inside it (links resolved, so no
    spelling of OUTPUT lets a run read its own annotated videos back as inputs)."""
    root, skip = Path(os.path.abspath(folder)), Path(os.path.realpath(output))
    if skip == Path(os.path.realpath(root)):
        raise BatchError(f"give an OUTPUT folder other than the INPUT folder {folder} itself")
    paths = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in VIDEO_SUFFIXES and not Path(os.path.realpath(p)).is_relative_to(skip)
                   and p.is_file())
    return [Video(path, path.relative_to(root).as_posix()) for path in paths]


def _videos_in_list(listing: Path) -> list[Video]:
    """One path a line (blank lines and ``#`` comments ignored), relative to the list's folder; outputs are
    named by each path relative to the folder all of them share."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BatchError(f"input {listing} is not a readable text file listing videos ({error})") from None
    base = Path(os.path.abspath(listing)).parent
    paths = list(dict.fromkeys(Path(os.path.abspath(base / line.strip())) for line in lines
                               if line.strip() and not line.lstrip().startswith("#")))
    if not paths:
        return []
    root = Path(os.path.commonpath([path.parent for path in paths]))
    return [Video(path, path.relative_to(root).as_posix()) for path in paths]


# --------------------------------------------------------------------------------------------------- outputs


def log_path(output: Path, video: Video) -> Path:
    return output / f"{video.name}.jsonl"


def annotated_path(output: Path, video: Video) -> Path:
    return output / f"{video.name}.annotated.mp4"


def timeline_path(output: Path, video: Video) -> Path:
    """``main.py --timeline``'s CSV for the video; its chart is the same path with ``.png``."""
    return output / f"{video.name}.timeline.csv"


def final_outputs(video: Video, options: JobOptions) -> list[Path]:
    """The video's outputs in the order they are renamed into place: the log last, since it marks completion."""
    outputs = [annotated_path(options.output, video)] if options.output_video else []
    if options.timeline:
        timeline = timeline_path(options.output, video)
        outputs += [timeline, timeline.with_suffix(".png")]
    return [*outputs, log_path(options.output, video)]


def is_complete(video: Video, options: JobOptions) -> bool:
    return all(path.is_file() for path in final_outputs(video, options))


def temporary_for(final: Path, token: str) -> Path:
    """Where an output is written until complete: hidden, beside it, unique to one attempt, same extension."""
    return final.with_name(f".{final.name}.{token}.part{final.suffix}")


def sweep_temporaries(output: Path) -> None:
    """Delete what attempts that never finished left behind (a killed worker, a killed driver)."""
    for path in output.rglob(".*.part.*"):
        if TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            logger.info("removed %s, left by an attempt that never finished", path)


def _sync(path: Path) -> None:
    """Flush a finished temporary to disk before its rename, so a power cut cannot leave an empty final file."""
    with path.open("rb") as file:
        os.fsync(file.fileno())


def stats_from_log(path: Path, classes: Iterable[str]) -> VideoStats:
    """Frames, duration, frames with faces, tracks and each label's share of face-time, from a JSONL log."""
    frames = with_faces = 0
    last_t = 0.0
    tracks: set[int] = set()
    labels: Counter[str] = Counter()
    with path.open(encoding="utf-8") as log:
        for line in log:
            record = json.loads(line)
            frames += 1
            last_t = record["t"]
            with_faces += bool(record["faces"])
            tracks.update(face["id"] for face in record["faces"])
            labels.update(face["label"] for face in record["faces"])
    # Frame i is at i / fps, so the last frame's time gives the frame period without opening the video.
    duration = last_t * frames / (frames - 1) if frames > 1 else 0.0
    face_time = sum(labels.values())
    shares = {name: round(labels[name] / face_time, 4) for name in classes} if face_time else {}
    return VideoStats(frames, round(duration, 3), with_faces, len(tracks), shares)


def write_summary(output: Path, results: list[VideoResult], classes: list[str]) -> Path:
    """``summary.csv``: one row per video, each label's share of face-time in its own column; written whole."""
    path = output / SUMMARY_NAME
    temporary = temporary_for(path, secrets.token_hex(6))
    columns = ["path", "status", "reason", "frames", "duration_s", "frames_with_faces", "tracks",
               *(f"share_{name}" for name in classes)]
    with temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for result in results:
            stats = result.stats
            numbers = [] if stats is None else [stats.frames, stats.duration_s, stats.frames_with_faces, stats.tracks,
                                                *(stats.label_shares.get(name, "") for name in classes)]
            writer.writerow([result.name, result.status, result.reason, *numbers])
    os.replace(temporary, path)
    return path


def earlier_reasons(output: Path) -> dict[str, str]:
    """The reasons of the last summary, so a skipped video keeps its note (e.g. that its file is cut short)."""
    try:
        with (output / SUMMARY_NAME).open(newline="", encoding="utf-8") as file:
            return {row["path"]: row["reason"] for row in csv.DictReader(file) if row.get("reason")}
    except (OSError, KeyError, csv.Error):
        return {}


def model_option(model: Path) -> str:
    """The model as workers should name it: relative to the project when inside it (a cluster's workers run a
    shipped copy of the project), else absolute (it must then be at that path on every node)."""
    path = Path(os.path.abspath(model))
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def check_options(output: Path, options: DetectorOptions, model_path: Path, shown: str = "") -> None:
    """Refuse to resume into an OUTPUT made with other options: skipped videos would silently disagree.

    ``shown`` is OUTPUT as the user gave it, for the message."""
    shown = shown or str(output)
    wanted = {**asdict(options), "model": model_path.name,
              "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest()}
    path = output / OPTIONS_NAME
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise BatchError(f"cannot read {path} ({error}); delete it if OUTPUT holds nothing to keep") from None
        different = sorted(key for key in wanted if recorded.get(key) != wanted[key])
        if different:
            verb = "differs" if len(different) == 1 else "differ"
            raise BatchError(f"{shown} holds results made with other options (the {' and '.join(different)} "
                             f"{verb}); give another OUTPUT folder, or the same options to resume")
        return
    temporary = temporary_for(path, secrets.token_hex(6))
    temporary.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------ the worker

_DETECTORS: dict[DetectorOptions, ExpressionDetector] = {}


def _detector(options: DetectorOptions) -> ExpressionDetector:
    """The worker process's detector for these options: built on its first video, reused for every other."""
    detector = _DETECTORS.get(options)
    if detector is None:
        detector = ExpressionDetector(model=REPO / options.model, detector=options.detector,
                                      smoothing=options.smoothing, min_confidence=options.min_confidence,
                                      show_stats=options.show_stats, show_ids=options.show_ids)
        # A job runs one pipeline per core already, so a second LiteRT thread per worker only competes with the
        # other workers (the records are the same either way: bench_batch.py compares them with main.py's).
        # ExpressionDetector has no thread option, so its classifier is rebuilt.
        detector.classifier = ExpressionClassifier(detector.classifier.model_path, num_threads=WORKER_THREADS)
        _DETECTORS[options] = detector
    return detector


@contextlib.contextmanager
def pinned_to(cores: frozenset[int] | None) -> Iterator[None]:
    """The calling thread, and the threads it starts meanwhile (MediaPipe's graph, the decoder), on ``cores``
    alone; the thread's earlier CPU set is put back after. ``None`` leaves the scheduler free.

    Each worker is a few threads (MediaPipe's graph runs two beside the Python thread), which the scheduler
    otherwise moves between cores and onto the other worker's core, at more cost than their parallelism
    gains: on two cores, an hour of video (``scripts/bench_long_videos.py --videos 60 --batch-only``) went
    from 17.3 to 19.0 seconds of video a second at full rate and from 41.4 to 44.4 at ``--sample-fps 10``.
    """
    if cores is None:
        yield
        return
    earlier = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cores)
    except OSError as error:  # a CPU this process may not use: pinning only saves time, so run unpinned
        logger.info("running unpinned: cannot pin to CPUs %s (%s)", sorted(cores), error)
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, earlier)


def process_video(video: Video, options: JobOptions, cores: frozenset[int] | None = None) -> VideoResult:
    """One whole video into its outputs: written under temporary names, renamed only once complete; on the CPUs
    ``cores`` alone when given (see ``pinned_to``).

    Whatever happens, this attempt's temporaries are gone when it returns; a killed process leaves them to
    ``sweep_temporaries``.
    """
    token = secrets.token_hex(6)
    temporaries = {final: temporary_for(final, token) for final in final_outputs(video, options)}
    try:
        with pinned_to(cores):
            return _process(video, options, temporaries)
    except ExpressionDetectorError as error:
        # Named as summary.csv names it, relative to INPUT: where the run happened is no part of the reason.
        return VideoResult(video.name, FAILED, str(error).replace(str(video.path), video.name))
    except OSError as error:
        return VideoResult(video.name, FAILED, f"cannot write its outputs ({error.strerror or error})")
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)


def _process(video: Video, options: JobOptions, temporaries: dict[Path, Path]) -> VideoResult:
    """The run as main.py's: the face detector before any output, outputs renamed into place only after the
    source ended by itself (not on Ctrl-C, not after a failed write)."""
    detector = _detector(options.detector)
    source = VideoFileSource(video.path, decoder_threads=WORKER_THREADS)
    try:
        pipeline = detector.pipeline(still_images=False)
        try:
            for final in temporaries:
                final.parent.mkdir(parents=True, exist_ok=True)
            sinks = _open_sinks(source, temporaries, detector.classes, video.name)
        except BaseException:
            pipeline.detector.close()
            raise
        outcome = detector.run(source, sinks, pipeline=pipeline, sample_fps=options.detector.sample_fps,
                               every_frame=options.output_video)
    finally:
        source.close()
    if outcome.status == 130:
        return VideoResult(video.name, INTERRUPTED, INTERRUPTED_REASON)
    if outcome.failure is not None:
        return VideoResult(video.name, FAILED, f"writing its outputs failed ({outcome.failure.strerror or outcome.failure})")
    for final, temporary in temporaries.items():
        _sync(temporary)
        os.replace(temporary, final)
    stats = stats_from_log(log_path(options.output, video), detector.classes)
    if source.end_note:
        return VideoResult(video.name, PARTIAL, source.end_note, stats)
    return VideoResult(video.name, DONE, "", stats)


def _open_sinks(source: VideoFileSource, temporaries: dict[Path, Path], classes: list[str], title: str) -> list[Sink]:
    """``main.py``'s own sinks on the temporaries: the annotated MP4, the timeline (CSV and chart), the JSONL log."""
    by_suffix = {final.name.rpartition(".")[2]: temporary for final, temporary in temporaries.items()}
    sinks: list[Sink] = []
    try:
        for suffix, temporary in by_suffix.items():
            if suffix == "mp4":
                sinks.append(VideoSink(temporary, source.fps, source.size))
            elif suffix == "csv":
                sinks.append(TimelineSink(temporary, classes, title, chart_path=by_suffix["png"], whole_files=False))
            elif suffix == "jsonl":
                sinks.append(JsonlSink(temporary))
    except Exception:
        for sink in sinks:
            sink.close()
        raise
    return sinks


# ------------------------------------------------------------------------------------------------ the driver


def start_ray(workers: int | None, address: str | None) -> tuple[int, float]:
    """Join the cluster at ``address``, or start a private local runtime with ``workers`` CPUs (default: the
    machine's cores); returns how many videos to run at once and the seconds Ray took to start."""
    # Ray's usage statistics would be posted to the internet; this job contacts no host but its own cluster.
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # A new local runtime turns Ray's token authentication on (kept) and warns about it on every start (not kept).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if address is not None:
        _check_reachable(address)
    started = time.perf_counter()
    try:
        with quiet_native():  # Ray's own start-up chatter; a failure is said in one sentence below
            if address is None:
                # No dashboard, Ray's smallest object store (tasks pass only small records).
                with _cloud_probes_blocked():
                    ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                             object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False,
                             logging_level=logging.WARNING)
            else:
                ray.init(address=address, runtime_env={"working_dir": str(REPO)}, log_to_driver=False,
                         logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise BatchError(_start_failure(address, error)) from None
    finally:
        restrict_auth_token()
    elapsed = time.perf_counter() - started
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1))), elapsed


def restrict_auth_token() -> None:
    """Make Ray's cluster credential readable by its owner alone (a local runtime writes it with mode 644)."""
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if token.is_file() and token.stat().st_uid == os.getuid() and token.stat().st_mode & 0o077:
            token.chmod(0o600)
    except OSError:
        pass  # not ours to change; Ray reads it either way


def _local_head_node():
    """Ray's node object for a local runtime this process started (its head); None when joined or not started."""
    node = getattr(ray._private.worker, "_global_node", None)
    return node if node is not None and getattr(node, "head", False) else None


def local_session_dir() -> Path | None:
    """The session folder (``/tmp/ray/session_...``) of a local runtime this process started; None when joined."""
    node = _local_head_node()
    return None if node is None else Path(node.get_session_dir_path())


def stop_local_autoscaler() -> None:
    """Stop the autoscaler monitor of a local runtime this process started, before ``ray.shutdown``.

    A runtime on this machine alone has nothing to scale, and the monitor cannot stop gracefully at shut-down:
    Ray stops its GCS first, and the monitor's SIGTERM handler then tries to report to that GCS until Ray's one
    second of grace runs out and it is killed (measured: shut-down 1.1-1.4 s with it, 0.4 s without). Ray's own
    kill skips the wait. A joined cluster's monitor is the cluster's and is left alone.
    """
    node = _local_head_node()
    if node is not None and hasattr(node, "kill_monitor"):
        node.kill_monitor(check_alive=False)


def remove_session_dir(session: Path | None) -> None:
    """Delete a finished local runtime's session folder (logs, sockets), and ``session_latest`` if it points there."""
    if session is None or not session.is_dir():
        return
    latest = session.parent / "session_latest"
    shutil.rmtree(session, ignore_errors=True)
    if latest.is_symlink() and Path(os.path.realpath(latest)) == Path(os.path.realpath(session)):
        latest.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        session.parent.rmdir()  # /tmp/ray itself, where no other session is left in it


@contextlib.contextmanager
def _cloud_probes_blocked() -> Iterator[None]:
    """Start the local runtime's processes with plain HTTP pointed at a closed local port.

    Ray 2.60's dashboard process, started even without the dashboard, asks the cloud metadata services
    (169.254.169.254, metadata.google.internal) which cloud it runs on, with usage statistics off too
    (usage_stats_head.py looks before it checks). It asks through ``requests``, which honours ``http_proxy``;
    Ray's own gRPC ignores proxies (``grpc.enable_http_proxy`` 0). So the probe fails on the spot, before any
    DNS lookup or packet leaves the machine. Ray's processes keep the setting; this process gets its own back.
    """
    saved = {name: os.environ.pop(name) for name in HTTP_PROXY_VARIABLES if name in os.environ}
    os.environ["http_proxy"] = os.environ["HTTP_PROXY"] = TELEMETRY_SINK_PROXY
    try:
        yield
    finally:
        for name in HTTP_PROXY_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(saved)


def _start_failure(address: str | None, error: Exception) -> str:
    """One sentence for a Ray that would not start or let us in; a cluster with token authentication needs it
    asked for, since Ray never sends a token to an address given explicitly."""
    if address is None:
        return f"cannot start a local Ray runtime ({str(error).strip().splitlines()[0]})"
    chain = [error, *(e for e in (error.__cause__, error.__context__) if e is not None)]
    if any("InvalidAuthToken" in str(e) for e in chain):
        return (f"cannot join the Ray cluster at {address}: it uses Ray's token authentication; run with "
                f"RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token (`ray get-auth-token` prints it "
                f"on the head node)")
    return f"cannot join the Ray cluster at {address} ({str(error).strip().splitlines()[0]})"


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nothing listens on: Ray itself retries such an address for many minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", a ray:// client address: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_CHECK_TIMEOUT_S).close()
    except OSError as error:
        raise BatchError(f"cannot join the Ray cluster at {address}: nothing answers there ({error.strerror or error}); "
                         f"check that `ray start --head` runs on that machine and that this is the address it "
                         f"printed") from None


def prepare(options: JobOptions) -> list[str]:
    """Check the model and the output folder before any worker starts; returns the model's classes.

    The face-detector model is fetched here on first use, once, rather than by every worker at the same time.
    """
    model_path = REPO / options.detector.model
    classifier = ExpressionClassifier(model_path, num_threads=1)
    for model_range in resolve_range(options.detector.detector, still_images=False):
        ensure_detector_model(model_range)
    try:
        options.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BatchError(f"cannot create the output folder {options.shown_output} ({error.strerror})") from None
    if not os.access(options.output, os.W_OK):
        raise BatchError(f"cannot write into the output folder {options.shown_output}")
    check_options(options.output, options.detector, model_path, options.shown_output)
    sweep_temporaries(options.output)
    return classifier.classes


_process_remote = ray.remote(num_cpus=1, max_retries=WORKER_DEATH_RETRIES)(process_video)


def worker_cores(workers: int, address: str | None) -> list[frozenset[int] | None]:
    """The CPUs each of the ``workers`` concurrent videos is pinned to: this process's own CPUs split into
    ``workers`` disjoint shares when the runtime is local and has a CPU per worker; on a cluster (whose
    machines' CPUs the driver does not know) or with more workers than CPUs, none (``None`` each)."""
    cpus = sorted(os.sched_getaffinity(0))
    if address is not None or workers > len(cpus):
        return [None] * workers
    return [frozenset(cpus[share::workers]) for share in range(workers)]


def run_videos(videos: list[Video], options: JobOptions, cores: list[frozenset[int] | None],
               on_result: Callable[[VideoResult], None]) -> tuple[list[VideoResult], bool]:
    """Every video on the cluster, one per entry of ``cores`` at a time (that video pinned to it: see
    ``pinned_to``), each result passed to ``on_result`` as it comes.

    Returns the results in completion order and whether Ctrl-C or SIGTERM (``Terminated``) stopped the job;
    the running videos are then cancelled and get ``CANCEL_GRACE_S`` to delete their temporaries.
    """
    pending, results = list(reversed(videos)), []
    running: dict[ray.ObjectRef, tuple[Video, frozenset[int] | None]] = {}
    free = list(reversed(cores))
    try:
        while pending or running:
            while pending and free:
                video, share = pending.pop(), free.pop()
                running[_process_remote.remote(video, options, share)] = (video, share)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                video, share = running.pop(ref)
                free.append(share)
                result = _collect(ref, video)
                results.append(result)
                on_result(result)
    except (KeyboardInterrupt, Terminated):
        with signals_deferred():
            # Only what is still running: cancelling a task whose reply is arriving trips an internal check in
            # Ray 2.60's driver (task_manager.cc: "Check failed ... Tried to complete task that was ...") and aborts it.
            _, unfinished = ray.wait(list(running), num_returns=len(running), timeout=0)
            for ref in unfinished:
                ray.cancel(ref)
            ray.wait(list(running), num_returns=len(running), timeout=CANCEL_GRACE_S)
        return results, True
    return results, False


def _collect(ref: ray.ObjectRef, video: Video) -> VideoResult:
    """The task's result; an unexpected error, or a worker that kept dying, makes the video failed, not the job."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if error.cause is not None else error
        logger.info("%s failed", video.name, exc_info=cause)
        return VideoResult(video.name, FAILED, f"unexpected {type(cause).__name__}: {str(cause).splitlines()[0]}")
    except ray.exceptions.RayError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return VideoResult(video.name, FAILED,
                           f"its worker died {WORKER_DEATH_RETRIES + 1} times ({first_line})")


def _unheard(video: Video, options: JobOptions, classes: list[str]) -> VideoResult:
    """A video whose result never came back (the job was interrupted): done if its outputs made it under their
    final names just before, else interrupted."""
    if is_complete(video, options):
        return VideoResult(video.name, DONE, "", stats_from_log(log_path(options.output, video), classes))
    return VideoResult(video.name, INTERRUPTED, INTERRUPTED_REASON)


def run_batch(videos: list[Video], options: JobOptions, workers: int | None, address: str | None,
              on_result: Callable[[VideoResult], None],
              on_start: Callable[[int, int], None] = lambda to_do, workers: None) -> BatchReport:
    """The whole job: check, skip what is complete, process the rest on Ray, sweep, write ``summary.csv``.

    ``on_start(videos to process, workers)`` is called once Ray runs; ``on_result`` for each video processed.
    """
    classes = prepare(options)
    reasons = earlier_reasons(options.output)
    skipped = {video.name: VideoResult(video.name, SKIPPED, reasons.get(video.name, ""),
                                       stats_from_log(log_path(options.output, video), classes))
               for video in videos if is_complete(video, options)}
    to_do = [video for video in videos if video.name not in skipped]
    startup_s, processing_s, processed, interrupted, session = 0.0, 0.0, [], False, None
    if to_do:
        try:
            workers, startup_s = start_ray(workers, address)
            session = local_session_dir()
            on_start(len(to_do), workers)
            started = time.perf_counter()
            processed, interrupted = run_videos(to_do, options, worker_cores(workers, address), on_result)
            processing_s = time.perf_counter() - started
        finally:
            with signals_deferred():
                stop_local_autoscaler()
                ray.shutdown()
                remove_session_dir(session)  # what a local run made; a cluster's sessions are its own
                sweep_temporaries(options.output)
    by_name = {**skipped, **{result.name: result for result in processed}}
    results = [by_name.get(video.name) or _unheard(video, options, classes) for video in videos]
    write_summary(options.output, results, classes)
    return BatchReport(results, startup_s, processing_s, interrupted)
