"""headscope/server/encoding.py's max_pool against a plain numpy loop over every cell."""

import math

import numpy as np
import pytest
import torch

from headscope.server.encoding import max_pool


def numpy_max_pool(a: np.ndarray, block: list[int]) -> np.ndarray:
    L, H, Tq, Tk = a.shape
    rows, cols = math.ceil(Tq / block[0]), math.ceil(Tk / block[1])
    out = np.empty((L, H, rows, cols), a.dtype)
    for i in range(rows):
        for j in range(cols):
            out[:, :, i, j] = a[:, :, i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]].max(axis=(2, 3))
    return out


@pytest.mark.parametrize(("shape", "max_side", "block"), [
    ((2, 3, 512, 512), 128, [4, 4]),  # divides evenly
    ((2, 3, 509, 300), 128, [4, 3]),  # neither side does: the last blocks are short
    ((1, 2, 7, 130), 8, [1, 17]),  # one side fits already
    ((1, 1, 1, 1000), 64, [1, 16]),
])
def test_max_pool_equals_the_max_of_each_block(shape, max_side, block):
    weights = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    weights /= weights.sum(-1, keepdim=True)  # rows of attention weights: >= 0, summing to 1
    pooled, got_block = max_pool(weights, max_side)
    assert got_block == block
    assert max(pooled.shape[-2:]) <= max_side
    np.testing.assert_array_equal(pooled.numpy(), numpy_max_pool(weights.numpy(), block))


def test_max_pool_leaves_what_fits_alone():
    weights = torch.rand(1, 2, 5, 9)
    pooled, block = max_pool(weights, 16)
    assert block == [1, 1] and pooled is weights
    assert max_pool(weights, None)[0] is weights
