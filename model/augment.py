"""Augmentation that fits faces, as batched TensorFlow ops inside tf.data.

One projective warp per image does flip, rotation, zoom and shift together (three separate Keras
layers would resample three times and run slower on a CPU); then brightness/contrast and random
erasing. No vertical flip: an upside-down face is not a face this model will ever see.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_ROTATION_DEGREES = 15.0
MAX_ZOOM = 0.1
MAX_SHIFT = 0.1
MAX_BRIGHTNESS = 0.15
CONTRAST_RANGE = (0.7, 1.3)
ERASE_PROBABILITY = 0.5
ERASE_AREA = (0.02, 0.15)


def _affine_transforms(batch_size, size: int) -> tf.Tensor:
    """Per image, the 8 projective parameters that map output pixels to input pixels."""
    uniform = lambda low, high: tf.random.uniform([batch_size], low, high)  # noqa: E731
    angle = uniform(-1.0, 1.0) * MAX_ROTATION_DEGREES * math.pi / 180.0
    zoom = uniform(1.0 - MAX_ZOOM, 1.0 + MAX_ZOOM)
    flip = tf.where(tf.random.uniform([batch_size]) < 0.5, -1.0, 1.0)
    shift_x = uniform(-MAX_SHIFT, MAX_SHIFT) * size
    shift_y = uniform(-MAX_SHIFT, MAX_SHIFT) * size
    centre = (size - 1) / 2.0
    a0 = flip * tf.cos(angle) / zoom
    a1 = -tf.sin(angle) / zoom
    b0 = flip * tf.sin(angle) / zoom
    b1 = tf.cos(angle) / zoom
    a2 = centre + shift_x - (a0 + a1) * centre
    b2 = centre + shift_y - (b0 + b1) * centre
    zeros = tf.zeros([batch_size])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _brightness_contrast(images: tf.Tensor, batch_size) -> tf.Tensor:
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([batch_size, 1, 1, 1], *CONTRAST_RANGE)
    brightness = tf.random.uniform([batch_size, 1, 1, 1], -MAX_BRIGHTNESS, MAX_BRIGHTNESS)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 1.0)


def _random_erasing(images: tf.Tensor, batch_size, size: int) -> tf.Tensor:
    """Blank a random rectangle with noise in half of the images, so no single face part is relied upon."""
    area = tf.random.uniform([batch_size], *ERASE_AREA) * size * size
    log_aspect = tf.random.uniform([batch_size], math.log(0.3), math.log(3.3))
    height = tf.clip_by_value(tf.sqrt(area * tf.exp(log_aspect)), 1.0, size)
    width = tf.clip_by_value(tf.sqrt(area / tf.exp(log_aspect)), 1.0, size)
    top = tf.random.uniform([batch_size]) * (size - height)
    left = tf.random.uniform([batch_size]) * (size - width)
    coords = tf.range(size, dtype=tf.float32)
    rows = (coords[None, :] >= top[:, None]) & (coords[None, :] < (top + height)[:, None])
    cols = (coords[None, :] >= left[:, None]) & (coords[None, :] < (left + width)[:, None])
    erase = rows[:, :, None] & cols[:, None, :] & (tf.random.uniform([batch_size, 1, 1]) < ERASE_PROBABILITY)
    noise = tf.random.uniform(tf.shape(images))
    return tf.where(erase[:, :, :, None], noise, images)


def augment_batch(images: tf.Tensor) -> tf.Tensor:
    """A randomly augmented copy of a (N, size, size, C) batch of faces with pixel values in [0, 1]."""
    batch_size = tf.shape(images)[0]
    size = images.shape[1]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=_affine_transforms(batch_size, size),
        output_shape=tf.constant([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return _random_erasing(_brightness_contrast(warped, batch_size), batch_size, size)
