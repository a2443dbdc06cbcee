"""Start-up, memory and live-camera frame rate of a web front end, as issue 14 compares them.

    python scripts/web_framework/measure.py streamlit|gradio CLIP.y4m PHOTO [SECONDS]

Starts the server (web.py, or gradio_app.py beside this file), times process start to the first page and to
the first answered photo in headless Chromium (Debian's, through Playwright), reads the server's RSS, then
plays CLIP through Chromium's fake camera for SECONDS and counts the annotated frames the page shows
(``requestVideoFrameCallback`` on Streamlit's video; new pictures in Gradio's output image) and the frames
the server processed. Prints one JSON object.
"""

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[3]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
         "--use-fake-ui-for-media-stream"]
COUNT_VIDEO_FRAMES = """(video, ms) => new Promise(done => { let n = 0; const start = performance.now();
    const tick = () => { n++; if (performance.now() - start < ms) video.requestVideoFrameCallback(tick); else done(n); };
    video.requestVideoFrameCallback(tick); setTimeout(() => done(n), ms + 3000); })"""
COUNT_NEW_PICTURES = """ms => new Promise(done => { const changes = new Map();
    const watch = new MutationObserver(records => records.forEach(r => changes.set(r.target, (changes.get(r.target) || 0) + 1)));
    watch.observe(document.body, {attributes: true, attributeFilter: ["src"], subtree: true});
    setTimeout(() => { watch.disconnect(); done(Math.max(0, ...changes.values())); }, ms); })"""


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def wait_for_page(url: str, server: subprocess.Popen) -> None:
    while True:
        assert server.poll() is None, "the server died"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)


def follow(server: subprocess.Popen, processed: list[int]) -> None:
    """The Gradio prototype prints its processed-frame count every second."""
    for line in server.stdout:
        if line.startswith("processed"):
            processed[0] = int(line.split()[1])


def main() -> None:
    kind, clip, photo = sys.argv[1], sys.argv[2], sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    port = 8590
    command = ([sys.executable, "web.py", "--port", str(port)] if kind == "streamlit"
               else [sys.executable, str(Path(__file__).with_name("gradio_app.py")), str(port)])
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}/"
    processed = [0]
    threading.Thread(target=follow, args=(server, processed), daemon=True).start()
    wait_for_page(url, server)
    result = {"framework": kind, "page_served_s": round(time.perf_counter() - started, 2)}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=[*FLAGS, f"--use-file-for-fake-video-capture={clip}"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files(photo)
        if kind == "streamlit":
            page.get_by_text("Download the JSON record").wait_for(timeout=120_000)
        else:
            page.locator("img").first.wait_for(timeout=120_000)
        result["first_answer_s"] = round(time.perf_counter() - started, 2)
        result["rss_after_photo_mb"] = round(rss_mb(server.pid), 1)
        if kind == "streamlit":
            page.get_by_role("tab", name="Live camera").click()
            camera = page.frame_locator("iframe[title*=webrtc]").first
            camera.get_by_role("button", name="Start the camera").click()
            page.get_by_text(re.compile(r"in the camera \(\d+ frames/s\)")).wait_for(timeout=60_000)
            page.wait_for_timeout(3000)
            shown = camera.locator("video").first.evaluate(COUNT_VIDEO_FRAMES, seconds * 1000)
            text = page.get_by_text(re.compile(r"in the camera \(\d+ frames/s\)")).inner_text()
            result["server_fps"] = int(re.search(r"\((\d+) frames/s", text).group(1))
        else:
            page.get_by_role("button", name="Click to Access Webcam").click()
            page.wait_for_timeout(2000)
            page.get_by_text("Record", exact=True).click()
            page.wait_for_timeout(3000)
            before, begin = processed[0], time.perf_counter()
            shown = page.evaluate(COUNT_NEW_PICTURES, seconds * 1000)
            result["server_fps"] = round((processed[0] - before) / (time.perf_counter() - begin), 1)
        result["browser_fps"] = round(shown / seconds, 1)
        result["rss_streaming_mb"] = round(rss_mb(server.pid), 1)
        browser.close()
    server.terminate()
    server.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
