"""The Gradio prototype measured against the Streamlit page for issue 14 (not shipped): one photo input and
Gradio's built-in streaming webcam, through the same ExpressionDetector as web.py.

    python scripts/web_framework/gradio_app.py PORT     (gradio 6.31 installed beside the project's packages)
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import cv2  # noqa: E402
import gradio as gr  # noqa: E402

from realtime.api import ExpressionDetector  # noqa: E402
from realtime.types import Frame  # noqa: E402

detector = ExpressionDetector()
detector.pipeline(still_images=True)
processed = {"frames": 0}


def still(rgb):
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(detector.annotate(bgr, detector.detect(bgr)), cv2.COLOR_BGR2RGB)


def live(rgb, state):
    if rgb is None:
        return None, state
    if state is None:
        state = {"pipeline": detector.pipeline(still_images=False), "start": time.monotonic(), "index": 0}
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    frame = Frame(bgr, state["index"], time.monotonic() - state["start"], "camera")
    _, annotated = state["pipeline"].process(frame, None)
    state["index"] += 1
    processed["frames"] += 1
    return cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB), state


with gr.Blocks(analytics_enabled=False) as demo:
    photo, answer = gr.Image(label="photo"), gr.Image(label="answer")
    photo.upload(still, photo, answer)
    camera = gr.Image(sources=["webcam"], streaming=True, format="jpeg")
    shown = gr.Image(streaming=True, format="jpeg", label="live")
    session = gr.State()
    camera.stream(live, [camera, session], [shown, session], stream_every=0.04, concurrency_limit=4)

demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), prevent_thread_lock=True)
while True:
    time.sleep(1)
    print("processed", processed["frames"], flush=True)
