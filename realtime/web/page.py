"""The page, as Streamlit runs it for each visitor (``python web.py`` starts it): photos, and the live camera.

Streamlit reruns this script on every interaction; the model is loaded once per process
(``current_service``) and each photo's answer is kept for the visitor's session while the photo
is on the page, so a rerun redraws without reading the photo again.
"""

from __future__ import annotations

import re

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit_webrtc import WebRtcMode, WebRtcStreamerContext, webrtc_streamer

from realtime.web.camera import CAMERA_MESSAGES, CAMERA_REFUSED_HINT, NO_ICE_SERVERS, LiveAnnotator
from realtime.web.photos import (
    MAX_MEGAPIXELS,
    MAX_UPLOAD_MB,
    PhotoRefused,
    PhotoResult,
    analyze_photo,
    face_rows,
)
from realtime.web.service import WebService, current_service

LIVE_TEXT_EVERY_S = 1.0
MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """A visitor's file name for Streamlit's markdown, shown as typed: no emphasis, links, LaTeX or :emoji:."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


def photo_answers(service: WebService, uploads: list[UploadedFile]) -> list[PhotoResult | PhotoRefused]:
    """Each upload's answer, computed once and kept only while the upload is on the page."""
    kept: dict[str, PhotoResult | PhotoRefused] = st.session_state.get("photo_answers", {})
    answers = {}
    for upload in uploads:
        if upload.file_id not in kept:
            try:
                kept[upload.file_id] = analyze_photo(service, upload.name, upload.getvalue())
            except PhotoRefused as refusal:
                kept[upload.file_id] = refusal
        answers[upload.file_id] = kept[upload.file_id]
    st.session_state["photo_answers"] = answers
    return list(answers.values())


def show_photo(result: PhotoResult, key: str) -> None:
    """The annotated picture beside its faces in words and a table, and the two downloads."""
    picture, words = st.columns(2)
    picture.image(result.annotated_jpeg, caption=f"{result.name}, annotated")
    if result.scale_note:
        words.info(result.scale_note)
    words.markdown(result.summary)
    if result.faces:
        words.table(face_rows(result.faces, result.classes), hide_index=True)
    words.download_button("Download the annotated picture", result.annotated_jpeg,
                          file_name=f"{result.stem}_annotated.jpg", mime="image/jpeg", on_click="ignore",
                          key=f"picture-{key}")
    words.download_button("Download the JSON record", result.record_json(), file_name=f"{result.stem}_faces.json",
                          mime="application/json", on_click="ignore", key=f"record-{key}")


def photos_tab(service: WebService) -> None:
    uploads = st.file_uploader(
        f"Photos: drop them here or browse (JPEG, PNG or WebP; up to {MAX_UPLOAD_MB} MB and {MAX_MEGAPIXELS} "
        f"megapixels each)", accept_multiple_files=True)  # any file: ours, not Streamlit's, is the sentence it gets
    for upload, answer in zip(uploads, photo_answers(service, uploads)):
        with st.container(border=True):
            st.subheader(plain(upload.name), anchor=False)
            if isinstance(answer, PhotoRefused):
                st.error(plain(str(answer)))
            else:
                show_photo(answer, upload.file_id)


@st.fragment(run_every=LIVE_TEXT_EVERY_S)
def live_faces(context: WebRtcStreamerContext, classes: list[str]) -> None:
    """The faces of the newest camera frame as text, refreshed every second without rerunning the page (only
    while the camera tab is open)."""
    processor = context.video_processor if context.state.playing else None
    if not isinstance(processor, LiveAnnotator):
        st.caption("Connecting to the camera.")
        return
    faces, fps = processor.snapshot()
    rate = "starting" if fps is None else f"{fps:.0f} frames/s"
    st.markdown(f"{len(faces)} face{'s' if len(faces) != 1 else ''} in the camera ({rate}).")
    if faces:
        st.table(face_rows(faces, classes), hide_index=True)


def camera_tab(service: WebService) -> None:
    st.markdown("Your camera's picture comes to this server, is labelled and sent straight back; "
                "nothing is recorded. Faces keep their labels steady as in the desktop window.")
    context = webrtc_streamer(
        key="camera", mode=WebRtcMode.SENDRECV, video_processor_factory=lambda: LiveAnnotator(service),
        rtc_configuration=NO_ICE_SERVERS, media_stream_constraints={"video": True, "audio": False},
        translations=CAMERA_MESSAGES, async_processing=True)
    st.caption(CAMERA_REFUSED_HINT)
    # The once-a-second text runs only while the camera plays: an idle tab has nothing to refresh, and each
    # refresh is a run during which a press of Start would reach a page that is busy (in one CI run a press
    # came to nothing, while these refreshes went on).
    if context.state.playing:
        live_faces(context, service.classes)
    else:
        st.caption("Press Start: the annotated picture appears here, and its faces as text below it.")


def main() -> None:
    st.set_page_config(page_title="Expression detector", layout="wide")
    service = current_service()
    st.title("Expression detector")
    st.markdown(f"Finds every face in your photos or your camera and reads its expression "
                f"({', '.join(service.classes)}), with the model's confidence. Photos and camera frames are "
                f"processed in memory on this server and kept nowhere; nothing is sent anywhere else.")
    # The camera's component and its once-a-second text are built only while its tab is open: each costs a
    # run of the page, and a file dropped on the uploader during a run can be lost. The photos tab always
    # runs, so its uploads survive a visit to the camera.
    photos, camera = st.tabs(["Photos", "Live camera"], key="tab", on_change="rerun")
    with photos:
        photos_tab(service)
    if camera.open:
        with camera:
            camera_tab(service)


main()
