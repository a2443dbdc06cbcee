"""An expression timeline: one row per second of source time, and a chart of it (``main.py --timeline``).

Each row holds the second, the mean number of faces in that second's analysed frames, and for each label
of the model (and ``not_sure``) the share of that second's face-time drawn with it: every analysed frame
stands for an equal slice of its second, so a face-frame's share of the second's face-frames is its
share of the face-time. Seconds without an analysed frame (a sample rate under 1 per second) have empty
cells. Both files are written under a temporary name and renamed once complete (unless the caller writes to
temporaries of its own, as ``batch.py`` does); our code imports matplotlib only here, when a timeline is asked
for (MediaPipe itself loads it at import).
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from realtime.annotator import UNCERTAIN_COLOUR, class_colour
from realtime.types import Face, Frame

NOT_SURE = "not_sure"


class TimelineSink:
    """Collects the analysed frames' faces per second; writes ``path`` (CSV) and its chart on close.

    The chart goes to ``chart_path``, by default ``path`` with ``.png``. ``whole_files`` writes each file under a
    temporary name and renames it; a caller that already writes to temporaries of its own turns it off.
    """

    needs_picture = False

    def __init__(self, path: Path, classes: list[str], title: str, chart_path: Path | None = None,
                 whole_files: bool = True) -> None:
        self.path, self.chart_path = path, chart_path or path.with_suffix(".png")
        self.classes, self.title, self.whole_files = list(classes), title, whole_files
        self._frames: Counter[int] = Counter()
        self._faces: Counter[int] = Counter()
        self._labels: dict[int, Counter[str]] = {}
        self._last_second = -1

    def consume(self, frame: Frame, faces: list[Face], annotated: np.ndarray | None) -> None:
        if not frame.analysed:
            return
        second = math.floor(frame.timestamp_s)
        self._last_second = max(self._last_second, second)
        self._frames[second] += 1
        self._faces[second] += len(faces)
        labels = self._labels.setdefault(second, Counter())
        labels.update(NOT_SURE if face.uncertain else face.label for face in faces)

    def rows(self) -> list[dict[str, str]]:
        columns = [*self.classes, NOT_SURE]
        rows = []
        for second in range(self._last_second + 1):
            row = {"second": str(second), "faces": ""} | {f"share_{name}": "" for name in columns}
            if self._frames[second]:
                row["faces"] = f"{self._faces[second] / self._frames[second]:.2f}"
                total = sum(self._labels[second].values())
                for name in columns:
                    row[f"share_{name}"] = f"{self._labels[second][name] / total:.4f}" if total else "0.0000"
            rows.append(row)
        return rows

    def close(self) -> None:
        rows = self.rows()
        temporary = self.path.with_name(f".{self.path.name}.part") if self.whole_files else self.path
        with temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["second", "faces", *(f"share_{n}" for n in
                                                                          [*self.classes, NOT_SURE])])
            writer.writeheader()
            writer.writerows(rows)
        if temporary != self.path:
            os.replace(temporary, self.path)
        self._write_chart(rows)

    def _write_chart(self, rows: list[dict[str, str]]) -> None:
        # The Figure API, not pyplot: no backend is chosen and no global state is left in the host process.
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter

        names = [*self.classes, NOT_SURE]
        seconds = np.arange(len(rows))
        shares = np.array([[float(row[f"share_{name}"] or 0.0) for row in rows] for name in names])
        colours = [np.array(UNCERTAIN_COLOUR[::-1]) / 255 if name == NOT_SURE else
                   np.array(class_colour(name, tuple(self.classes))[::-1]) / 255 for name in names]
        figure = Figure(figsize=(12, 3.6), dpi=100)
        axes = figure.subplots()
        if len(rows):  # each second drawn as a step over [s, s + 1)
            axes.stackplot(np.append(seconds, len(rows)), np.concatenate([shares, shares[:, -1:]], axis=1),
                           labels=[n.replace("_", " ") for n in names], colors=colours, step="post")
        axes.set_xlim(0, max(len(rows), 1))
        axes.set_ylim(0, 1)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(x) // 60}:{int(x) % 60:02d}"))
        axes.set_xlabel("time (minutes:seconds)")
        axes.set_ylabel("share of face-time")
        axes.set_title(self.title)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        figure.tight_layout()
        temporary = self.chart_path.with_name(f".{self.chart_path.name}.part.png") if self.whole_files else self.chart_path
        figure.savefig(temporary, format="png")
        if temporary != self.chart_path:
            os.replace(temporary, self.chart_path)
