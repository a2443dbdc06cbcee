"""The expression CNN, sized for the run-time budget of about 1 ms per face on two CPU cores.

Four double-convolution blocks (16-32-64-128 channels) on a square gray face of the input spec's side
(64 pixels for the shipped model, 48 for a user's own photos), then a small dense head on the flattened
map (4x4 at 64 pixels, 3x3 at 48). Dropout sits in the head only: with augmentation, random erasing and
label smoothing already in play, a network this small underfits when its convolutions drop out too
(training accuracy stalled at 0.76 with spatial dropout in every block).

About 106 MFLOP per face at 64 pixels (60 at 48): networks four to forty times larger gained under a
point on FER2013 (its labels are noisy; see ../shared/docs/DESIGN.md). At 64 pixels the export runs
each face once (0.25 ms at batch 8); at 48 it can afford each face twice, as seen and mirrored.
"""

from __future__ import annotations

import keras
from keras import layers

from model.preprocess import InputSpec

BASE_WIDTHS = (16, 32, 64, 128)  # the shipped network's channels, block by block


def scaled_widths(multiplier: float) -> tuple[int, ...]:
    """Each block's channels at ``multiplier`` times ``BASE_WIDTHS``, rounded to a multiple of 8 (the width
    CPU kernels vectorize over); the per-face cost grows about as the multiplier squared."""
    return tuple(max(8, int(width * multiplier / 8 + 0.5) * 8) for width in BASE_WIDTHS)


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_network(
    num_classes: int,
    spec: InputSpec = InputSpec(),
    widths: tuple[int, ...] = BASE_WIDTHS,
    dense_units: int = 256,
    dropout: float = 0.25,
) -> keras.Model:
    """A functional Keras model from normalized faces to class logits (softmax is left to the loss and export)."""
    inputs = keras.Input((spec.size, spec.size, spec.channels), name="face")
    x = inputs
    for block, filters in enumerate(widths, start=1):
        x = _conv_bn_relu(x, filters, f"block{block}a")
        x = _conv_bn_relu(x, filters, f"block{block}b")
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="head_drop1")(x)
    x = layers.Dense(dense_units, use_bias=False, name="head_dense")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.Dropout(dropout, name="head_drop2")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="expression_cnn")


def count_flops(model: keras.Model) -> int:
    """Floating-point operations for one face (a multiply-add counts as two), convolutions and dense layers."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w, in_channels, out_channels = layer.kernel.shape
            _, out_h, out_w, _ = layer.output.shape
            flops += 2 * kernel_h * kernel_w * in_channels * out_channels * out_h * out_w
        elif isinstance(layer, layers.Dense):
            in_units, out_units = layer.kernel.shape
            flops += 2 * in_units * out_units
    return int(flops)
