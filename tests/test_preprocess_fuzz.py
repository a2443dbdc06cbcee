"""Random boxes, eye points and frame shapes through the crop/preprocess path: it never raises, shape is right."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.preprocess import CropFraming, InputSpec, crop_aligned_face, face_to_input

coordinate = st.floats(min_value=-5000, max_value=5000, allow_nan=False, allow_infinity=False)
point = st.one_of(st.none(), st.tuples(coordinate, coordinate))


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 600),
    width=st.integers(1, 600),
    channels=st.sampled_from([None, 1, 3, 4]),
    box=st.tuples(coordinate, coordinate, st.floats(1, 3000), st.floats(1, 3000)),
    eye_a=point,
    eye_b=point,
    scale=st.floats(0.5, 2.0),
    shift=st.floats(-0.3, 0.3),
)
def test_crop_and_preprocess_never_raise(height, width, channels, box, eye_a, eye_b, scale, shift):
    shape = (height, width) if channels is None else (height, width, channels)
    frame = np.random.default_rng(height * 601 + width).integers(0, 256, shape, dtype=np.uint8)
    crop = crop_aligned_face(frame, box, eye_a, eye_b, CropFraming(scale, shift))
    assert crop.shape[0] == crop.shape[1] >= 1
    result = face_to_input(crop, InputSpec())
    assert result.shape == (48, 48, 1) and result.dtype == np.float32
    assert np.isfinite(result).all()
