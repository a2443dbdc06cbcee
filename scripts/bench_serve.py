"""Figures for serve.py (issue 22): throughput and latency of the HTTP API, its in-process latency, and its memory.

  python scripts/bench_serve.py                       2 workers (serve.py's default here)
  python scripts/bench_serve.py --workers 1 --seconds 6

Starts its own ``serve.py`` on a free loopback port and measures, with real HTTP clients (httpx, one thread
and one connection each), all on this machine:

- requests per second and latency percentiles (p50, p90, p99) for one face (obama.jpg) and for five faces, at
  1, 4 and 16 concurrent clients; each cell is bounded in requests and in seconds. No shared photo holds five
  faces (the most is two), so the five-face photo is obama.jpg, biden.jpg, kit_with_rose.jpg and obama.jpg
  again side by side at 700 pixels high (1 + 1 + 2 + 1 faces; 1929x700), built in memory; the script checks
  that all five are found (BlazeFace misses some faces of wider strips, e.g. obama + two_people + kit_with_rose);
- the in-process median latency of a warm obama.jpg request: the same FastAPI application called through
  httpx's ASGI transport in this process, decoding, detection and the record included, no socket;
- memory: 16 clients posting the shared photos for 20 s, every answer checked against the in-process answer
  for that photo, the server's RSS read from /proc ten times a second; RSS in the 20th second must be within
  10 % of the 5th (each second's median of its readings; the single readings at 5 s and 20 s are printed too).

Prints a markdown table. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = REPO.parent / "shared" / "media"
PHOTOS = ("obama.jpg", "biden.jpg", "obama_and_biden.jpg", "two_people.jpg", "kit_with_rose.jpg")
FIVE_FACES = ("obama.jpg", "biden.jpg", "kit_with_rose.jpg", "obama.jpg")
CLIENTS = (1, 4, 16)
RSS_SECONDS = 20
RSS_TOLERANCE = 0.10


@dataclass
class Cell:
    """One load level's answers: latencies of correct answers and how many were wrong or failed."""

    latencies: list[float] = field(default_factory=list)
    wrong: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies, p)) * 1000 if self.latencies else float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def five_face_photo() -> bytes:
    """Four shared photos side by side at one height (JPEG, quality 90): 1 + 1 + 2 + 1 faces."""
    height = 700
    pictures = [cv2.imread(str(MEDIA / name)) for name in FIVE_FACES]
    scaled = [cv2.resize(p, (round(p.shape[1] * height / p.shape[0]), height), interpolation=cv2.INTER_AREA)
              for p in pictures]
    return cv2.imencode(".jpg", np.hstack(scaled), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def start_server(workers: int) -> tuple[subprocess.Popen, str]:
    """serve.py on a free loopback port, once it answers /health."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "serve.py", "--port", str(port), "--workers", str(workers)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve.py ended: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("serve.py did not answer within 180 s")


def post(client: httpx.Client, data: bytes, name: str) -> httpx.Response:
    return client.post("/detect", content=data, headers={"Content-Type": "image/jpeg"}, params={"name": name})


def load(url: str, photos: list[tuple[str, bytes]], expected: dict[str, dict], clients: int, max_requests: int,
         max_seconds: float) -> Cell:
    """``clients`` threads posting ``photos`` in turn until ``max_requests`` are sent or ``max_seconds`` pass."""
    cell, lock = Cell(), threading.Lock()
    tickets = itertools.count()
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120, trust_env=False) as own:
            start.wait()
            deadline = time.perf_counter() + max_seconds
            while time.perf_counter() < deadline and (ticket := next(tickets)) < max_requests:
                name, data = photos[ticket % len(photos)]
                began = time.perf_counter()
                try:
                    response = post(own, data, name)
                    right = response.status_code == 200 and response.json() == expected[name]
                except httpx.HTTPError:
                    right = False
                with lock:
                    if right:
                        cell.latencies.append(time.perf_counter() - began)
                    else:
                        cell.wrong += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()  # every client connected and ready: the clock starts for all at once
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    cell.seconds = time.perf_counter() - began
    return cell


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_run(url: str, pid: int, photos: list[tuple[str, bytes]],
               expected: dict[str, dict]) -> tuple[Cell, list[float], list[float]]:
    """16 clients for ``RSS_SECONDS`` s while the server's RSS is read ten times a second: the reading at each
    whole second, and each second's median (steadier: a reading moves by the photos in flight at that instant,
    two decoded photos and their copies, some 10 % of the whole)."""
    readings: list[tuple[float, float]] = []
    done = threading.Event()
    began = time.perf_counter()

    def sample() -> None:
        while not done.wait(0.1):
            readings.append((time.perf_counter() - began, rss_mb(pid)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        cell = load(url, photos, expected, 16, 10**9, RSS_SECONDS + 0.5)
    finally:
        done.set()
        sampler.join()
    at_second = [next(rss for t, rss in readings if t >= second) for second in range(1, RSS_SECONDS + 1)]
    medians = [statistics.median(rss for t, rss in readings if second - 1 <= t < second)
               for second in range(1, RSS_SECONDS + 1)]
    return cell, at_second, medians


def in_process(shared: dict[str, bytes], repeats: int) -> tuple[float, dict[str, dict]]:
    """The median of ``repeats`` warm obama.jpg requests through the app in this process, and every photo's record."""
    from realtime.api import DEFAULT_MODEL
    from realtime.http_api.app import create_app
    from realtime.http_api.pool import DetectorPool

    async def measure(pool: DetectorPool) -> tuple[float, dict[str, dict]]:
        transport = httpx.ASGITransport(app=create_app(pool))
        async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
            async def ask(name: str) -> dict:
                response = await client.post("/detect", content=shared[name], params={"name": name},
                                             headers={"Content-Type": "image/jpeg"})
                response.raise_for_status()
                return response.json()
            records = {name: await ask(name) for name in shared}
            for _ in range(5):
                await ask("obama.jpg")
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                await ask("obama.jpg")
                times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000, records

    with DetectorPool(DEFAULT_MODEL, "auto", 1) as pool:
        return asyncio.run(measure(pool))


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="serve.py --workers (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="at most this long per cell (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=160, help="at most this many requests per cell "
                                                                  "(default: %(default)s)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # other work on the machine: say how busy it was
    shared = {name: (MEDIA / name).read_bytes() for name in PHOTOS}
    five = five_face_photo()
    median_ms, expected = in_process({**shared, "five_faces.jpg": five}, repeats=40)
    found = len(expected["five_faces.jpg"]["faces"])
    process, url = start_server(args.workers)
    try:
        rows = []
        for label, name in (("1 face (obama.jpg)", "obama.jpg"), (f"{found} faces (collage)", "five_faces.jpg")):
            data = five if name == "five_faces.jpg" else shared[name]
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as warm:
                for _ in range(3):
                    post(warm, data, name).raise_for_status()
            for clients in CLIENTS:
                cell = load(url, [(name, data)], expected, clients, args.requests, args.seconds)
                rows.append((label, clients, cell))
        cell, at_second, medians = memory_run(url, process.pid, list(shared.items()), expected)
    finally:
        status = stop(process)

    print(f"serve.py --workers {args.workers}, {os.cpu_count()} cores (load average {load_before:.1f} before the "
          f"run); each cell at most {args.requests} requests or {args.seconds:g} s\n")
    print("| photo | clients | requests | wrong or failed | requests/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, clients, row in rows:
        print(f"| {label} | {clients} | {len(row.latencies)} | {row.wrong} | {row.rate:.1f} | {row.percentile(50):.0f} "
              f"| {row.percentile(90):.0f} | {row.percentile(99):.0f} |")
    print(f"\nIn-process median latency of a warm obama.jpg request: {median_ms:.1f} ms (target < 50 ms)")
    change = medians[RSS_SECONDS - 1] / medians[4] - 1
    verdict = "within" if abs(change) <= RSS_TOLERANCE else "NOT within"
    print(f"\nMemory: 16 clients posting the {len(PHOTOS)} shared photos for {RSS_SECONDS} s: {len(cell.latencies)} "
          f"answers, {cell.wrong} wrong or failed, {cell.rate:.1f} requests/s. Server RSS, median of the 5th second "
          f"{medians[4]:.0f} MB, of the 20th {medians[RSS_SECONDS - 1]:.0f} MB ({change:+.1%}, {verdict} 10 %); "
          f"single readings at 5 s and 20 s: {at_second[4]:.0f} and {at_second[RSS_SECONDS - 1]:.0f} MB "
          f"({at_second[RSS_SECONDS - 1] / at_second[4] - 1:+.1%}).")
    print(f"\nPer-second medians (MB): {', '.join(f'{value:.0f}' for value in medians)}")
    print(f"Readings at each second (MB): {', '.join(f'{value:.0f}' for value in at_second)}")
    print(f"\nserve.py stopped with exit status {status}")
    failed = any(row.wrong for _, _, row in rows) or cell.wrong or abs(change) > RSS_TOLERANCE or status != 0
    return 1 if failed or found != 5 else 0


if __name__ == "__main__":
    sys.exit(main())
