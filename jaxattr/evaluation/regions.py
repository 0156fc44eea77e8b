"""Regions: pool relevance into r×r regions, rank them, and count how many to perturb.

Every function here works on **one image** (``(height, width, channels)``) and is
``jax.vmap``-ed over the batch by its caller; the counting helpers are plain numpy
(they decide shapes, so they run at trace time).

Conventions (DESIGN.md §3):

* relevance is **summed over channels, signed** (``reduce="sum"``, the default: positive and
  negative channels of a pixel cancel), then over each r×r region (a region's score is the
  sum of its pixels' scores). ``reduce="abs_sum"`` sums ``|R|`` over channels, ``"l2"`` takes
  the channel vector's norm ``‖R‖₂`` (:data:`REDUCTIONS`, :func:`region_scores`). When ``height`` or ``width`` is not a multiple of
  ``r`` the regions of the last row/column are smaller (the image is padded with zero
  relevance, which does not change any sum).
* iNNvestigate's perturbation tool averages over channels and scores regions by their
  mean: the same ranking wherever all regions have the same size; with smaller edge
  regions the sum used here ranks an edge region by its total relevance, not its density.
* ``"morf"`` (most relevant first) ranks regions by decreasing score, ``"lerf"`` (least
  relevant first) by increasing score, ``"random"`` by a uniformly random permutation
  (the random baseline; from sorting 32-bit random keys). Ties are broken by a stable sort on the flattened (row-major)
  region index, so equal scores are perturbed in raster order.
* The result of the ranking is a *rank map*: ``rank[i, j]`` is the position of pixel
  ``(i, j)``'s region in the perturbation order, so "the top ``c`` regions" is the
  boolean mask ``rank < c`` — one comparison per step, no gather.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence

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


def check_region(region: int, height: int, width: int) -> int:
    """Validate the region side ``r`` against the image size; return it as an ``int``."""
    if isinstance(region, bool):
        raise TypeError(f"region must be an int (the side of the square regions); got {region!r}.")
    try:
        region = operator.index(region)
    except TypeError:
        raise TypeError(
            f"region must be an int (the side of the square regions); got {region!r} "
            f"of type {type(region).__name__}."
        ) from None
    if not 1 <= region <= min(height, width):
        raise ValueError(
            f"region must lie in [1, min(height, width)] = [1, {min(height, width)}] for "
            f"{height}×{width} images; got {region}."
        )
    return region


def grid_shape(height: int, width: int, region: int) -> tuple[int, int]:
    """Number of region rows and columns: ``(⌈height/r⌉, ⌈width/r⌉)``."""
    return -(-height // region), -(-width // region)


def n_regions(height: int, width: int, region: int) -> int:
    """Number of regions ``n = ⌈height/r⌉·⌈width/r⌉``."""
    rows, cols = grid_shape(height, width, region)
    return rows * cols


def check_steps(steps: int, n: int, region: int, height: int, width: int) -> int:
    """Validate the number of perturbation steps ``L`` (``1 ≤ L ≤ n_regions``)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int; got {steps!r} of type {type(steps).__name__}.")
    steps = int(steps)
    if not 1 <= steps <= n:
        rows, cols = grid_shape(height, width, region)
        raise ValueError(
            f"steps must lie in [1, n_regions] = [1, {n}] ({height}×{width} images with "
            f"region={region} give {rows}×{cols} = {n} regions); got {steps}."
        )
    return steps


def step_counts(n: int, steps: int) -> np.ndarray:
    """Regions perturbed at each step: ``c_k = min(k·⌈n/L⌉, n)`` for ``k = 0..L``.

    ``c_0 = 0`` (the unperturbed image) and ``c_L = n`` (every region perturbed).
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


def region_scores(relevance: jax.Array, region: int, reduce: str = "sum") -> jax.Array:
    """One image's relevance ``(H, W, C)`` -> region scores ``(rows, cols)``: each pixel's
    channels reduced to one number, then summed over r×r regions,

    .. math::

        s = \\sum_{(i, j) \\in \\text{region}} \\rho(R_{ij}), \\qquad
        \\rho(R_{ij}) = \\sum_c R_{ijc} \\text{ (sum)}, \\quad \\sum_c |R_{ijc}| \\text{ (abs_sum)},
        \\quad \\Big(\\sum_c R_{ijc}^2\\Big)^{1/2} \\text{ (l2)}.

    ``"sum"`` (default) keeps the sign, as iNNvestigate's perturbation tool (which averages the
    channels, DESIGN §9): a pixel whose channels carry +1 and −1 scores 0, and negative
    evidence ranks last under MoRF. ``"abs_sum"``/``"l2"`` rank by magnitude (for maps whose
    sign is not the evidence's direction).
    """
    check_reduce(reduce)
    height, width = relevance.shape[:2]
    rows, cols = grid_shape(height, width, region)
    r = relevance.astype(jnp.float32)
    if reduce == "abs_sum":
        per_pixel = jnp.sum(jnp.abs(r), axis=-1)
    elif reduce == "l2":
        per_pixel = jnp.sqrt(jnp.sum(r * r, axis=-1))
    else:
        per_pixel = jnp.sum(r, axis=-1)
    padded = jnp.pad(per_pixel, ((0, rows * region - height), (0, cols * region - width)))
    return padded.reshape(rows, region, cols, region).sum(axis=(1, 3))


def region_ranks(scores: jax.Array, order: str, key: jax.Array) -> jax.Array:
    """Rank map of one image's regions: ``rank[i, j]`` = position in the perturbation order.

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


def pixel_ranks(relevance: jax.Array, region: int, order: str, key: jax.Array,
                reduce: str = "sum") -> jax.Array:
    """Rank map at pixel resolution ``(H, W)``: each pixel carries its region's rank."""
    height, width = relevance.shape[:2]
    ranks = region_ranks(region_scores(relevance, region, reduce), order, key)
    upsampled = jnp.repeat(jnp.repeat(ranks, region, axis=0), region, axis=1)
    return upsampled[:height, :width]
