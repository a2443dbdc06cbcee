"""The live pipeline: source -> detector -> preprocess -> classifier -> tracker -> annotator -> sinks.

Nothing under this package imports TensorFlow: the classifier runs the exported model with LiteRT.
``from realtime import ExpressionDetector`` is the Python API (``realtime.api``); it is loaded on
first use, so importing a single stage stays cheap.
"""

from model.errors import ExpressionDetectorError

__all__ = ["ExpressionDetector", "ExpressionDetectorError", "Face", "FrameResult"]


def __getattr__(name: str):
    if name in ("ExpressionDetector", "FrameResult"):
        from realtime import api

        return getattr(api, name)
    if name == "Face":
        from realtime.types import Face

        return Face
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
