"""Faster implementations of some primitives, used by the engine wherever it re-binds a node.

The traced program is the spec; these give the same forward values and the same derivatives
(up to float rounding in the backward of :func:`narrow_conv`) and only change how XLA's CPU
backend runs them. :func:`fast_impl` picks one for a node, or ``None``.

* Max pooling with non-overlapping windows (``nn.max_pool(x, (2, 2), (2, 2))`` on even sizes)
  → reshape + ``reduce_max`` (:func:`tiled_max_pool`); its backward is the max-pool rule's
  (:class:`jaxattr.rules.WinnerTakeAll` by default), never ``select_and_scatter``.
* A convolution whose input has few channels (the first layer of an image or DNA model)
  keeps its forward and gets an im2col backward (:func:`narrow_conv`): XLA's CPU backend runs
  the transposed convolution to 1–4 output channels poorly vectorised (paper CNN, batch 128,
  32×32×3 → 32: 10.6 ms, against 1.9 ms as a matrix product plus shifted sums).

Both were measured faster on XLA's CPU backend only, so :data:`FAST_PATHS` turns them on per
backend: on CPU both, on GPU and TPU none (their convolutions and reductions are XLA's own;
nothing CPU-specific is forced on an accelerator). The backend is ``jax.default_backend()``
when the program is traced. The max-pool *rule* (first-maximum routing on strided views,
:mod:`jaxattr.rules.pooling`) is part of the method's definition and applies everywhere.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["FAST_PATHS", "NARROW_CHANNELS", "fast_impl", "narrow_conv", "split_windows", "tiled_max_pool",
           "window_tiles"]

#: Input channels up to which a stride-1 convolution gets the im2col backward.
NARROW_CHANNELS = 4


#: Primitives with a faster implementation, per backend (measured on that backend); a backend
#: not listed gets none.
FAST_PATHS: dict[str, frozenset] = {"cpu": frozenset({"reduce_window_max", "conv_general_dilated"})}


def fast_impl(node, in_avals: Sequence[Any], backend: Optional[str] = None) -> Optional[Callable]:
    """A faster implementation of ``node`` (a :class:`jaxattr.engine.trace.Node`) on ``backend``
    (``None``: ``jax.default_backend()``), or ``None``."""
    backend = jax.default_backend() if backend is None else backend
    if node.prim not in FAST_PATHS.get(backend, ()):
        return None
    make = {"reduce_window_max": tiled_max_pool, "conv_general_dilated": narrow_conv}.get(node.prim)
    if make is None or any(a is None for a in in_avals):
        return None
    return make(node, in_avals)


def window_tiles(params) -> Optional[tuple]:
    """The window of a ``reduce_window_max`` whose windows do not overlap (window = stride, no
    padding, no dilation), or ``None``."""
    win = tuple(params["window_dimensions"])
    if (win != tuple(params["window_strides"]) or any(lo or hi for lo, hi in params["padding"])
            or any(d != 1 for d in params["base_dilation"])
            or any(d != 1 for d in params["window_dilation"])):
        return None
    return win


def split_windows(shape: Sequence[int], win: Sequence[int]) -> tuple[tuple, tuple]:
    """``(split, axes)``: ``x.reshape(split)`` has each window along ``axes`` (``shape`` a
    multiple of ``win``), so the pool is ``max(x.reshape(split), axes)``."""
    split = tuple(d for n, w in zip(shape, win) for d in (n // w, w))
    return split, tuple(2 * i + 1 for i in range(len(win)))


def tiled_max_pool(node, in_avals) -> Optional[Callable]:
    """``reduce_window_max`` whose windows tile the input → reshape + ``reduce_max``."""
    shape, win = in_avals[0].shape, window_tiles(node.params)
    if win is None or any(n % w for n, w in zip(shape, win)):
        return None
    split, axes = split_windows(shape, win)

    def impl(x):
        return lax.reduce_max(x.reshape(split), axes)

    return impl


def narrow_conv(node, in_avals) -> Optional[Callable]:
    r"""A channels-last, stride-1 convolution of a narrow input with an im2col input-VJP.

    For ``y = conv(x, W)`` (``x``: ``(N, *S, C)``, ``W``: ``(*K, C, O)``, padding ``(lo, hi)``
    per spatial axis) the input cotangent is

    .. math:: \bar x_{n, s, c} = \sum_{k} P_{n, s + lo - k, k, c}, \qquad
              P_{n, t, k, c} = \sum_o \bar y_{n, t, o} W_{k, c, o}

    one matrix product and :math:`|K|` shifted sums. The forward is the traced convolution
    itself; the weight cotangent is XLA's.
    """
    p = node.params
    lhs, rhs = in_avals
    n = lhs.ndim - 2
    dn = p["dimension_numbers"]
    channels_last = (tuple(dn.lhs_spec) == (0, n + 1, *range(1, n + 1))
                     and tuple(dn.rhs_spec) == (n + 1, n, *range(n))
                     and tuple(dn.out_spec) == (0, n + 1, *range(1, n + 1)))
    if (not channels_last or lhs.shape[-1] > NARROW_CHANNELS
            or not jnp.issubdtype(lhs.dtype, jnp.floating)
            or any(s != 1 for s in p["window_strides"]) or any(d != 1 for d in p["lhs_dilation"])
            or any(d != 1 for d in p["rhs_dilation"]) or p["feature_group_count"] != 1
            or p["batch_group_count"] != 1 or any(lo < 0 or hi < 0 for lo, hi in p["padding"])
            or all(k == 1 for k in rhs.shape[:n])):
        return None
    bind_params = node.primitive.get_bind_params(p)
    kernel, spatial = rhs.shape[:n], lhs.shape[1:-1]

    def conv(x, w):
        return node.primitive.bind(x, w, **bind_params)

    def input_vjp(g, w):
        patches = lax.dot_general(g, w, (((g.ndim - 1,), (w.ndim - 1,)), ((), ())),
                                  precision=p["precision"])  # (N, *T, *K, C)
        total = 0
        for offset in np.ndindex(*kernel):
            part = patches[(slice(None),) * (n + 1) + tuple(offset)]
            pads = [(0, 0)] + [(o, k - 1 - o) for o, k in zip(offset, kernel)] + [(0, 0)]
            total = total + jnp.pad(part, pads)
        crop = tuple(slice(lo, lo + s) for (lo, _), s in zip(p["padding"], spatial))
        return total[(slice(None),) + crop].astype(g.dtype)

    @jax.custom_vjp
    def impl(x, w):
        return conv(x, w)

    def fwd(x, w):
        return conv(x, w), (x, w)

    def bwd(res, g):
        x, w = res
        dw = jax.vjp(lambda w: conv(x, w), w)[1](g)[0]
        return input_vjp(g, w).astype(x.dtype), dw

    impl.defvjp(fwd, bwd)
    return impl

