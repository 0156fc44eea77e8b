"""Pooling helpers shared by the bundled models."""
from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["max_pool_2x2"]


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max pooling with stride 2 and VALID padding over NHWC input.

    When height and width are even, the pool is written as a reshape followed by a
    max over the two window axes::

        x.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))

    which gives the same values as ``nn.max_pool(x, (2, 2), strides=(2, 2))`` but is
    faster on XLA's CPU backend, forward and backward: the reshape lowers to a plain
    ``reduce_max`` whose gradient is a cheap fused select, where ``nn.max_pool``
    lowers to ``reduce_window`` whose gradient is ``select_and_scatter`` (about 8×
    slower for a 128×32×32×32 input on a 2-core CPU, see DESIGN.md §8). Otherwise
    (odd height or width) it falls back to ``nn.max_pool``, which drops the last
    row/column like VALID padding does.

    Gradient on ties: ``reduce_max`` splits the incoming gradient equally between
    equal maxima of a window, ``nn.max_pool`` gives it all to the first one. The
    forward values are identical; only windows with tied maxima differ backward.

    Args:
      x: array of shape ``(..., H, W, C)``; leading axes are batch axes.

    Returns:
      Array of shape ``(..., H // 2, W // 2, C)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> max_pool_2x2(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
      Array([[ 5.,  7.],
             [13., 15.]], dtype=float32)
    """
    if x.ndim < 3:
        raise ValueError(
            f"max_pool_2x2: x must have shape (..., H, W, C), got shape {x.shape}"
        )
    *lead, h, w, c = x.shape
    if h % 2 == 0 and w % 2 == 0:
        return x.reshape(*lead, h // 2, 2, w // 2, 2, c).max(axis=(-4, -2))
    return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")
