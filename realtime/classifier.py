"""The classifier stage: all faces of a frame in one call to the exported model, run by LiteRT.

TensorFlow is never imported here; LiteRT (the ``ai-edge-litert`` package) runs the ``.tflite``
file with XNNPACK. Resizing an interpreter's input re-allocates its tensors, which costs more than
a small batch itself, so one interpreter is kept per batch-size bucket and a batch is padded up to
the next bucket.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from model.card import CardError, ModelCard, card_path_for
from model.errors import ExpressionDetectorError
from model.preprocess import InputSpec
from realtime.native import quiet_native

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


class ModelError(ExpressionDetectorError):
    """A model file that cannot be used; the message names the file and what is wrong."""


class ExpressionClassifier:
    """Calibrated class probabilities for a batch of preprocessed faces."""

    def __init__(self, model_path: Path, num_threads: int = 2) -> None:
        self.model_path = Path(model_path)
        if self.model_path.is_dir():
            raise ModelError(f"model {self.model_path} is a folder; name its .tflite file")
        if not self.model_path.is_file():
            raise ModelError(f"model file {self.model_path} does not exist")
        if self.model_path.suffix.lower() != ".tflite":
            raise ModelError(f"{self.model_path} is not a model; give a .tflite file with its .json card beside it")
        try:
            self.card = ModelCard.load(card_path_for(self.model_path))
        except CardError as error:
            raise ModelError(str(error)) from None
        self._model_bytes = self.model_path.read_bytes()
        self._num_threads = num_threads
        self._interpreters: dict[int, Interpreter] = {}
        first = self._interpreter(1)
        self._check_against_card(first)
        # Looked up once: get_*_details builds fresh dicts on every call, which the per-frame path need not pay.
        self._input_index = first.get_input_details()[0]["index"]
        self._output_index = first.get_output_details()[0]["index"]

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @property
    def input_spec(self) -> InputSpec:
        return self.card.input

    def _interpreter(self, batch: int) -> Interpreter:
        interpreter = self._interpreters.get(batch)
        if interpreter is None:
            try:
                with quiet_native():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." at allocation
                    interpreter = Interpreter(model_content=self._model_bytes, num_threads=self._num_threads)
                    index = interpreter.get_input_details()[0]["index"]
                    interpreter.resize_tensor_input(index, [batch, *interpreter.get_input_details()[0]["shape"][1:]])
                    interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as error:
                raise ModelError(f"{self.model_path} is not a usable TFLite model ({error})") from None
            self._interpreters[batch] = interpreter
        return interpreter

    def _check_against_card(self, interpreter: Interpreter) -> None:
        spec = self.card.input
        input_shape = tuple(interpreter.get_input_details()[0]["shape"][1:])
        output_shape = tuple(interpreter.get_output_details()[0]["shape"][1:])
        if input_shape != (spec.size, spec.size, spec.channels):
            raise ModelError(
                f"{self.model_path} takes inputs of shape {input_shape} but its card says "
                f"{(spec.size, spec.size, spec.channels)}")
        if output_shape != (len(self.card.classes),):
            raise ModelError(
                f"{self.model_path} has {output_shape[0] if output_shape else 0} outputs but its card names "
                f"{len(self.card.classes)} classes")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        bucket = next(size for size in BATCH_BUCKETS if size >= len(batch))
        if bucket != len(batch):
            padding = np.zeros((bucket - len(batch), *batch.shape[1:]), dtype=np.float32)
            batch = np.concatenate([batch, padding])
        interpreter = self._interpreter(bucket)
        interpreter.set_tensor(self._input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(self._output_index)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """(N, K) probabilities for (N, size, size, channels) normalized faces, in card class order."""
        faces = np.ascontiguousarray(faces, dtype=np.float32)
        largest = BATCH_BUCKETS[-1]
        chunks = [self._run(faces[i : i + largest])[: len(faces[i : i + largest])] for i in range(0, len(faces), largest)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)), np.float32)
