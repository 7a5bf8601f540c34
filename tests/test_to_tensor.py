"""``to_tensor`` (OpenCV's blob plus one division) gives the numpy pre-processing's values bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgevision.models.transforms import to_tensor

images = hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3)))
channel = st.floats(0.0, 255.0, width=32)
spread = st.floats(0.5, 300.0, width=32)


@settings(max_examples=60, deadline=None)
@given(images, st.tuples(channel, channel, channel), st.tuples(spread, spread, spread), st.booleans(), st.booleans())
def test_values_are_those_of_the_numpy_formula_bit_for_bit(image, mean, std, swap_rb, nchw):
    x = (image[..., ::-1] if swap_rb else image).astype(np.float32)
    expected = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    expected = np.ascontiguousarray(expected.transpose(2, 0, 1)[None] if nchw else expected[None])
    found = to_tensor(image, mean=mean, std=std, swap_rb=swap_rb, nchw=nchw)
    assert found.dtype == np.float32 and found.flags.c_contiguous
    np.testing.assert_array_equal(found, expected)


def test_without_std_it_only_subtracts_and_lays_out():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(to_tensor(image, mean=(1, 1, 1))[0, 2], image[..., 2].astype(np.float32) - 1)


def test_a_float_image_gets_the_numpy_formula():
    image = np.array([[[10.5, 20.0, 30.25]]])  # float64, as a caller from Python may pass
    found = to_tensor(image, mean=(1, 2, 3), std=(1, 2, 4), swap_rb=True, nchw=False)
    assert found.dtype == np.float32
    assert found.ravel().tolist() == [29.25, 9.0, 1.875]  # RGB (30.25, 20, 10.5) - mean, then / std


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_anything_but_a_three_channel_image_is_refused(image):
    with pytest.raises(ValueError, match="3-channel"):
        to_tensor(image)
