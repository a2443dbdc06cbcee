"""Which frames of a stream are analysed: every one, or R per second of source time (``--sample-fps R``).

Frames are chosen by their timestamps, not by counting: the first frame in each 1/R-second slot of
source time is analysed. So the rate holds for variable frame rates and for cameras too, and a
video's choice does not depend on how fast it is read. Frames between analysed ones are either not
decoded into pixels at all (a video file only grabs them) or, where a sink shows every frame (an
output video, the window), passed on marked ``analysed=False`` and drawn with the last analysed
frame's faces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from realtime.types import Frame

# A timestamp this close below a slot's start counts as in the slot (timestamps are index / fps, in floats).
_SLOT_TOLERANCE = 1e-6


@dataclass
class FrameSampler:
    """``rate`` frames per second of source time (None: every frame), decided frame by frame by timestamp."""

    rate: float | None = None
    _last_slot: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError("a sample rate must be more than 0 frames per second")

    def wants(self, timestamp_s: float) -> bool:
        """Whether the frame at ``timestamp_s`` is analysed; call once per frame, in stream order."""
        if self.rate is None:
            return True
        slot = math.floor(timestamp_s * self.rate + _SLOT_TOLERANCE)
        if self._last_slot is not None and slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True


def sampled(source, sample_fps: float | None, every_frame: bool) -> Iterable[Frame]:
    """The source's frames at ``sample_fps``: all of them, the others marked not analysed (``every_frame``), or
    only the analysed ones. A source that can skip decoding (``VideoFileSource.frames``) does so itself."""
    if sample_fps is None or source.is_still:
        return source
    sampler = FrameSampler(sample_fps)
    frames = getattr(source, "frames", None)
    if frames is not None:
        return frames(sampler, every_frame)
    return _filtered(source, sampler, every_frame)


def _filtered(frames: Iterable[Frame], sampler: FrameSampler, every_frame: bool) -> Iterator[Frame]:
    for frame in frames:
        if sampler.wants(frame.timestamp_s):
            yield frame
        elif every_frame:
            yield replace(frame, analysed=False)
