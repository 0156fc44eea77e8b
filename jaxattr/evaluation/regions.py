"""Regions: pool relevance into regions, rank them, and count how many to perturb.

Layouts (the batch axis first; :func:`spatial_shape` reads the region axes from the shape):

==================================  =================================  ======================
input                               region axes                        a region
==================================  =================================  ======================
``(batch, features)``               ``(features,)``, no channel axis    ``r`` consecutive
(tabular rows, embeddings)                                              features (``r=1``: each)
``(batch, length, channels)``       ``(length,)``                       ``r`` positions × all
(signals, one-hot DNA)                                                  channels
``(batch, height, width, channels)``  ``(height, width)``               ``r×r`` pixels × all
(NHWC images)                                                           channels
``(batch, *axes, channels)``        ``axes``                            ``r_1×…×r_d`` block
==================================  =================================  ======================

``region`` is an int (the same size on every region axis) or a tuple of one size per region
axis (``(4, 2)``: 4×2 rectangles). Every function here works on **one example**
(``(*axes, channels)`` or ``(features,)``) and is ``jax.vmap``-ed over the batch by its
caller; the counting helpers are plain numpy (they decide shapes, so they run at trace time).

Conventions (DESIGN.md §3):

* relevance is **summed over channels, signed** (``reduce="sum"``, the default: positive and
  negative channels of a position cancel), then over each region (a region's score is the sum
  of its positions' scores). ``reduce="abs_sum"`` sums ``|R|`` over channels, ``"l2"`` takes
  the channel vector's norm ``‖R‖₂`` (:data:`REDUCTIONS`, :func:`region_scores`). When an axis
  is not a multiple of its region size the last regions along it are smaller (padded with zero
  relevance, which does not change any sum).
* iNNvestigate's perturbation tool averages over channels and scores regions by their
  mean: the same ranking wherever all regions have the same size; with smaller edge
  regions the sum used here ranks an edge region by its total relevance, not its density.
* ``"morf"`` (most relevant first) ranks regions by decreasing score, ``"lerf"`` (least
  relevant first) by increasing score, ``"random"`` by a uniformly random permutation
  (the random baseline; from sorting 32-bit random keys). Ties are broken by a stable sort
  on the flattened (row-major) region index, so equal scores are perturbed in raster order.
* The result of the ranking is a *rank map* at position resolution: ``rank[i, j]`` is the
  position of pixel ``(i, j)``'s region in the perturbation order, so "the top ``c``
  regions" is the boolean mask ``rank < c`` — one comparison per step, no gather.
"""
from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ORDERS = ("morf", "lerf", "random")
#: How a pixel's channels become one score: signed sum, sum of magnitudes, Euclidean norm.
REDUCTIONS = ("sum", "abs_sum", "l2")


def check_reduce(reduce: str) -> str:
    """Return ``reduce`` if it is one of :data:`REDUCTIONS`, else raise a ``ValueError``."""
    if not isinstance(reduce, str) or reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}; got {reduce!r}.")
    return reduce


def check_order(order: str) -> str:
    """Return ``order`` if it is one of :data:`ORDERS`, else raise a ``ValueError``."""
    if not isinstance(order, str) or order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}.")
    return order


def spatial_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The region axes of an input of ``shape`` (batch axis first), by its layout:

    * ``(batch, features)`` (2-D, tabular rows, embeddings): ``(features,)`` — each feature
      (or each group of ``region`` consecutive features) is a region; no channel axis;
    * ``(batch, *axes, channels)`` (3-D and more): ``axes`` — ``(length,)`` for signals and
      sequences (one-hot DNA ``(batch, 200, 4)``), ``(height, width)`` for NHWC images,
      ``(depth, height, width)`` for volumes. The last axis is always the channels.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(
            f"x must be (batch, features) or (batch, *axes, channels) (e.g. NHWC images (batch, height, "
            f"width, channels), sequences (batch, length, channels)); got shape {shape}."
        )
    return shape[1:] if len(shape) == 2 else shape[1:-1]


def axis_names(shape: Sequence[int]) -> tuple[str, ...]:
    """Names of the region axes of an input of ``shape``: ``("height", "width")`` and the like."""
    if len(shape) == 2:
        return ("features",)
    n_axes = len(shape) - 2
    return {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}.get(
        n_axes, tuple(f"axis{i + 1}" for i in range(n_axes))
    )


def layout(shape: Sequence[int]) -> str:
    """The layout an input of ``shape`` is read as: ``"(batch, height, width, channels)"`` and the like."""
    names = axis_names(shape)
    return "(batch, " + ", ".join(names + (() if len(shape) == 2 else ("channels",))) + ")"


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what}; got {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what}; got {value!r} of type {type(value).__name__}.") from None


def check_region(
    region: int | Sequence[int], shape: Sequence[int], names: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Validate ``region`` against the region axes ``shape`` (see :func:`spatial_shape`);
    return one region size per axis.

    An int is the same size on every axis (``1 ≤ r ≤ min(shape)``: square regions on images);
    a tuple gives one size per axis (``1 ≤ r_i ≤ shape[i]``). ``names``: the axes' names for
    messages (default: those of a ``(batch, *axes, channels)`` input).
    """
    shape = tuple(int(s) for s in shape)
    sizes = "×".join(map(str, shape))
    names = ", ".join(names if names is not None else axis_names((0,) * (len(shape) + 2)))
    if isinstance(region, (tuple, list)):
        what = f"region must be an int or a tuple of {len(shape)} ints (one size per axis: {names})"
        values = tuple(_as_int(r, what) for r in region)
        if len(values) != len(shape):
            raise ValueError(f"{what} for inputs with region axes {sizes}; got {tuple(region)!r}.")
        if not all(1 <= r <= s for r, s in zip(values, shape)):
            raise ValueError(f"region sizes must lie in [1, axis size] for region axes {sizes}; got {values}.")
        return values
    region = _as_int(region, "region must be an int (the side of the square regions) or a tuple of ints")
    if not 1 <= region <= min(shape):
        raise ValueError(
            f"region must lie in [1, min({names})] = [1, {min(shape)}] for inputs with region axes {sizes}; "
            f"got {region}."
        )
    return (region,) * len(shape)


def grid_shape(shape: Sequence[int], region: int | Sequence[int]) -> tuple[int, ...]:
    """Number of regions along each axis: ``⌈shape_i / r_i⌉``."""
    region = _region_tuple(region, len(shape))
    return tuple(-(-int(s) // r) for s, r in zip(shape, region))


def n_regions(shape: Sequence[int], region: int | Sequence[int]) -> int:
    """Number of regions ``n = Π_i ⌈shape_i / r_i⌉`` of inputs whose region axes are ``shape``
    (e.g. ``n_regions((32, 32), 4) == 64``)."""
    return math.prod(grid_shape(shape, region))


def _region_tuple(region: int | Sequence[int], n_axes: int) -> tuple[int, ...]:
    return tuple(int(r) for r in region) if isinstance(region, (tuple, list)) else (int(region),) * n_axes


def _describe(shape: Sequence[int], region: Sequence[int]) -> str:
    grid = grid_shape(shape, region)
    region = region[0] if len(set(region)) == 1 else tuple(region)
    return (f"{'×'.join(map(str, shape))} inputs with region={region} give {'×'.join(map(str, grid))} = "
            f"{math.prod(grid)} regions")


def check_steps(steps: int, shape: Sequence[int], region: Sequence[int]) -> int:
    """Validate the number of perturbation steps ``L`` (``1 ≤ L ≤ n_regions``) for region axes
    ``shape`` and region sizes ``region``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int; got {steps!r} of type {type(steps).__name__}.")
    steps, n = int(steps), n_regions(shape, region)
    if not 1 <= steps <= n:
        raise ValueError(f"steps must lie in [1, n_regions] = [1, {n}] ({_describe(shape, region)}); got {steps}.")
    return steps


class RepeatedStepsWarning(UserWarning):
    """``steps`` does not spread the regions evenly: the last columns of the curve repeat."""


def _repeats(n: int, steps: int) -> int:
    """How many of the columns ``k = 1..L`` perturb every region (1 when none repeats)."""
    return steps - -(-n // -(-n // steps)) + 1


def warn_repeated_steps(n: int, steps: int, stacklevel: int = 3) -> None:
    """Warn (:class:`RepeatedStepsWarning`) when ``c_k = min(k·⌈n/L⌉, n)`` reaches ``n`` before
    ``k = L``: the curve's last columns then repeat the fully perturbed input and AOPC, the
    mean over all ``L + 1`` columns, weighs that input ``r/(L+1)`` instead of ``1/(L+1)``."""
    repeated = _repeats(n, steps)
    if repeated <= 1:
        return
    per_step = -(-n // steps)
    below = next((s for s in range(steps - 1, 0, -1) if _repeats(n, s) == 1), None)
    above = next((s for s in range(steps + 1, n + 1) if _repeats(n, s) == 1), None)
    suggestion = " or ".join(f"steps={s}" for s in (below, above) if s is not None)
    warnings.warn(
        f"steps={steps} does not spread the {n} regions evenly: step k perturbs min(k·⌈{n}/{steps}⌉, {n}) = "
        f"min({per_step}k, {n}) regions, so the last {repeated} columns of the curve all perturb every region "
        f"and AOPC weighs that input {repeated}/{steps + 1} instead of 1/{steps + 1}. Choose steps with "
        f"(steps − 1)·⌈n/steps⌉ < n (e.g. {suggestion}) for evenly weighted steps.",
        RepeatedStepsWarning,
        stacklevel=stacklevel,
    )


def step_counts(n: int, steps: int) -> np.ndarray:
    """Regions perturbed at each step: ``c_k = min(k·⌈n/L⌉, n)`` for ``k = 0..L``.

    ``c_0 = 0`` (the unperturbed input) and ``c_L = n`` (every region perturbed). When
    ``(L − 1)·⌈n/L⌉ ≥ n`` (e.g. ``n = 16, L = 10``: 2 regions per step, all 16 gone at
    ``k = 8``) the last counts repeat ``n``, and AOPC's mean over the ``L + 1`` columns weighs
    the fully perturbed input once per repeat; :func:`warn_repeated_steps` says so.
    """
    per_step = -(-n // steps)
    return np.minimum(np.arange(steps + 1) * per_step, n).astype(np.int32)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Validate confidence-drop fractions: a non-empty sequence of numbers in ``[0, 1]``."""
    try:
        values = tuple(float(f) for f in fractions)
    except TypeError:
        raise TypeError(f"fractions must be a sequence of numbers in [0, 1]; got {fractions!r}.") from None
    if not values or not all(0.0 <= f <= 1.0 for f in values):
        raise ValueError(f"fractions must be a non-empty sequence of numbers in [0, 1]; got {fractions!r}.")
    return values


def fraction_counts(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Regions perturbed for each fraction: ``⌈f·n⌉`` (rounded to 9 digits first so that
    ``0.1·1000`` is 100, not 101)."""
    return np.array([math.ceil(round(f * n, 9)) for f in fractions], dtype=np.int32)


def _split_channels(relevance: jax.Array, region: int | Sequence[int],
                    reduce: str = "sum") -> tuple[jax.Array, tuple[int, ...]]:
    """Relevance per position (the channel axis, when there is one, reduced by ``reduce``) and
    the region sizes. An int region means channels last (``(*axes, channels)``); a tuple names
    the region axes, which are the leading ``len(region)`` axes, followed by at most one channel
    axis."""
    check_reduce(reduce)
    if isinstance(region, (tuple, list)):
        region = tuple(int(r) for r in region)
    else:
        region = (int(region),) * (relevance.ndim - 1)
    if relevance.ndim not in (len(region), len(region) + 1):
        raise ValueError(
            f"relevance of one example must have {len(region)} region axes and at most one channel axis; "
            f"got shape {relevance.shape} with region={region}."
        )
    r = relevance.astype(jnp.float32)
    if relevance.ndim == len(region):  # no channel axis: each position is one value
        return (jnp.abs(r) if reduce != "sum" else r), region
    if reduce == "abs_sum":
        return jnp.sum(jnp.abs(r), axis=-1), region
    if reduce == "l2":
        return jnp.sqrt(jnp.sum(r * r, axis=-1)), region
    return jnp.sum(r, axis=-1), region


def region_scores(relevance: jax.Array, region: int | Sequence[int], reduce: str = "sum") -> jax.Array:
    """One example's relevance -> one score per region: each position's channels reduced to one
    number, then summed over the region,

    .. math::

        s = \\sum_{p \\in \\text{region}} \\rho(R_p), \\qquad
        \\rho(R_p) = \\sum_c R_{pc} \\text{ (sum)}, \\quad \\sum_c |R_{pc}| \\text{ (abs_sum)},
        \\quad \\Big(\\sum_c R_{pc}^2\\Big)^{1/2} \\text{ (l2)}.

    ``"sum"`` (default) keeps the sign, as iNNvestigate's perturbation tool (which averages the
    channels, DESIGN §9): a position whose channels carry +1 and −1 scores 0, and negative
    evidence ranks last under MoRF. ``"abs_sum"``/``"l2"`` rank by magnitude (for maps whose
    sign is not the evidence's direction).

    ``(H, W, C)`` with an int ``r`` -> ``(⌈H/r⌉, ⌈W/r⌉)``; in general ``(*axes, C)`` or
    ``(*axes,)`` with a tuple ``region`` -> ``(⌈axes_i/r_i⌉, ...)``.
    """
    per_position, region = _split_channels(relevance, region, reduce)
    grid = grid_shape(per_position.shape, region)
    padded = jnp.pad(per_position, [(0, g * r - s) for g, r, s in zip(grid, region, per_position.shape)])
    split = tuple(size for g, r in zip(grid, region) for size in (g, r))
    return padded.reshape(split).sum(axis=tuple(range(1, 2 * len(region), 2)))


def region_ranks(scores: jax.Array, order: str, key: jax.Array) -> jax.Array:
    """Rank map of one example's regions: ``rank[i, j]`` = position in the perturbation order.

    ``key`` is only used by ``order="random"``.
    """
    flat = scores.reshape(-1)
    if order == "random":
        # sort 32-bit random keys: a uniform permutation up to (≈ n²/2³³-likely) ties, which
        # fall back to index order; compiles faster than jax.random.permutation's shuffle
        perm = jnp.argsort(jax.random.bits(key, (flat.size,), jnp.uint32), stable=True)
    else:
        perm = jnp.argsort(flat, stable=True, descending=(order == "morf"))
    ranks = jnp.zeros(flat.size, jnp.int32).at[perm].set(jnp.arange(flat.size, dtype=jnp.int32))
    return ranks.reshape(scores.shape)


def pixel_ranks(relevance: jax.Array, region: int | Sequence[int], order: str, key: jax.Array,
                reduce: str = "sum") -> jax.Array:
    """Rank map at position resolution, the relevance's region axes (``(H, W)`` for an
    ``(H, W, C)`` image): each position carries its region's rank."""
    region = _region_tuple(region, relevance.ndim - 1)
    ranks = region_ranks(region_scores(relevance, region, reduce), order, key)
    for axis, r in enumerate(region):
        ranks = jnp.repeat(ranks, r, axis=axis)
    return ranks[tuple(slice(0, s) for s in relevance.shape[: len(region)])]
