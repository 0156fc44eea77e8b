"""Perturbations: what a removed region is replaced with, and how the step inputs are built.

A perturbation is any callable ``(key, example) -> replacement`` that maps **one example**
(an image ``(height, width, channels)``, a sequence ``(length, channels)``, a tabular row
``(features,)``: ``x`` without its batch axis) and a PRNG key to an array of the same shape;
it is called once per example (under ``jax.vmap``) and the *same* replacement is used at
every step, so a position perturbed at step k holds the same value at steps k+1..L and the
curve is consistent. The presets are frozen dataclasses (hashable, hence usable as static
``jit`` arguments):

==============  =====================================================================
name            replacement
==============  =====================================================================
``"zeros"``     0
``"mean"``      the example's scalar mean over all positions and channels (a tabular
                row: the mean of its features — meaningful only for features on one
                scale; pass a callable returning per-feature means otherwise)
``"channel_mean"`` the example's mean over its positions, per channel: an image's mean
                colour, a sequence's mean token embedding (not for tabular rows)
an array        a constant baseline (:class:`Constant`): a scalar or one value per channel,
                e.g. a ``[MASK]`` token's embedding for token-level evaluation of
                ``(batch, tokens, features)`` embeddings
``"uniform"``   i.i.d. ``U(low, high)`` per position **and** channel — the Amorim et al.
                "random RGB value"; ``[low, high]`` is the data range (default [0, 1])
``"blur"``      a Gaussian-blurred copy (per channel, along every region axis: both
                axes of an image, the length of a sequence; ``sigma`` in positions,
                ``scipy.ndimage.gaussian_filter`` semantics: truncate 4σ, reflect
                edges). Tabular rows ``(batch, features)`` have no neighbourhood to blur
                over: refused with a ``ValueError``.
==============  =====================================================================

A perturbed position is replaced in **all** channels (iNNvestigate ≤ 2.0.1 and Quantus
perturbed only the first channel of a region — DESIGN.md §8).
A user callable is called per example with that example's key; pass the same function
object on every call or ``jit`` recompiles (it is a static argument).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

PerturbationFn = Callable[[jax.Array, jax.Array], jax.Array]
PERTURBATIONS = ("zeros", "mean", "channel_mean", "uniform", "blur")


@dataclasses.dataclass(frozen=True)
class Zeros:
    """Replace perturbed positions by 0."""

    def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
        del key
        return jnp.zeros_like(image)


@dataclasses.dataclass(frozen=True)
class Mean:
    """Replace perturbed positions by the example's scalar mean over all positions and channels."""

    def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
        del key
        return jnp.full_like(image, jnp.mean(image))


@dataclasses.dataclass(frozen=True)
class ChannelMean:
    """Replace perturbed positions by the example's mean over its positions, channel by
    channel: ``mean_{p} x[p, c]``. On token embeddings ``(tokens, features)`` this is the
    example's mean token embedding; on an image its mean colour. Tabular rows ``(features,)``
    have no channel axis: ``ValueError`` (use ``"mean"`` or :class:`Constant`)."""

    def __call__(self, key: jax.Array, example: jax.Array) -> jax.Array:
        del key
        if example.ndim < 2:
            raise ValueError(
                f"the channel_mean perturbation needs examples with position axes and a channel axis "
                f"((tokens, features), (height, width, channels), ...); got one of shape {example.shape}. "
                f"For tabular rows use 'mean' or Constant(per_feature_values)."
            )
        axes = tuple(range(example.ndim - 1))
        return jnp.broadcast_to(jnp.mean(example, axis=axes, keepdims=True), example.shape)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Replace perturbed positions by a fixed baseline: a scalar, or one value per channel
    (the last axis of an example: a token's embedding features, an image's channels, a tabular
    row's features), broadcast over the positions.

    Token-level evaluation replaces whole tokens of ``(batch, tokens, features)`` embeddings by
    a baseline embedding, e.g. the ``[MASK]`` token's: ``perturbation=Constant(mask_embedding)``
    (or pass the array itself). The values are kept as a tuple of Python floats, so the preset
    is hashable (a static ``jit`` argument: equal values reuse the compiled program)."""

    value: tuple

    def __init__(self, value):
        array = np.asarray(value, dtype=np.float64)
        if array.ndim > 1:
            raise ValueError(
                f"a constant baseline is a scalar or one value per channel (a vector); got shape {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("a constant baseline must be finite; it holds NaN or Inf.")
        object.__setattr__(self, "value", tuple(float(v) for v in array.reshape(-1)) if array.ndim else float(array))

    def __call__(self, key: jax.Array, example: jax.Array) -> jax.Array:
        del key
        value = jnp.asarray(self.value, example.dtype)
        if value.ndim == 1 and (example.ndim == 0 or value.shape[0] != example.shape[-1]):
            raise ValueError(
                f"the constant baseline has {value.shape[0]} values, one per channel, but the examples have "
                f"shape {example.shape} (channels = the last axis, {example.shape[-1] if example.ndim else 0})."
            )
        return jnp.broadcast_to(value, example.shape)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Replace each perturbed position and channel by an independent draw from ``U(low, high)``."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and float(self.low) < float(self.high)):
            raise ValueError(
                f"low must be < high, both finite, for the uniform perturbation; got low={self.low!r}, "
                f"high={self.high!r}."
            )

    def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
        return jax.random.uniform(key, image.shape, image.dtype, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Blur:
    """Replace perturbed positions by a Gaussian-blurred copy of the example (each channel
    alone), blurred along every axis but the last (the channels).

    On an image ``(H, W, C)`` it matches ``scipy.ndimage.gaussian_filter(image, (sigma, sigma,
    0), truncate=truncate)`` (mode ``"reflect"``; kernel radius ``int(truncate·sigma + 0.5)``);
    on a sequence ``(L, C)`` it is the 1-D Gaussian along the length,
    ``gaussian_filter(x, (sigma, 0))``. A tabular row ``(features,)`` has no channel axis and
    no neighbourhood: ``ValueError``.
    """

    sigma: float = 1.0
    truncate: float = 4.0

    def __post_init__(self):
        if not (math.isfinite(self.sigma) and float(self.sigma) > 0):
            raise ValueError(f"blur sigma must be > 0; got {self.sigma!r}.")

    def __call__(self, key: jax.Array, image: jax.Array) -> jax.Array:
        del key
        if image.ndim < 2:
            raise ValueError(
                f"the blur perturbation needs examples with region axes and a channel axis ((length, "
                f"channels), (height, width, channels), ...); got one of shape {image.shape}: tabular rows "
                f"(batch, features) have no neighbourhood to blur over. Use 'zeros', 'mean', 'uniform' or a "
                f"callable (key, row) -> replacement."
            )
        radius = int(self.truncate * self.sigma + 0.5)
        taps = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 * (taps / self.sigma) ** 2)
        weights = weights / weights.sum()
        blurred = image.astype(jnp.float32)
        for axis in range(image.ndim - 1):
            blurred = _correlate(blurred, weights, axis)
        return blurred.astype(image.dtype)


def _correlate(image: jax.Array, weights: np.ndarray, axis: int) -> jax.Array:
    """1-D correlation along ``axis`` with symmetric ("reflect" in scipy) boundaries."""
    radius = (len(weights) - 1) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="symmetric")
    size = image.shape[axis]
    return sum(
        float(w) * jax.lax.slice_in_dim(padded, j, j + size, axis=axis) for j, w in enumerate(weights)
    )


def resolve_perturbation(
    perturbation: str | PerturbationFn | jax.typing.ArrayLike, *, low: float = 0.0, high: float = 1.0, blur_sigma: float = 1.0
) -> PerturbationFn:
    """Turn a perturbation name (see :data:`PERTURBATIONS`), a constant baseline (an array: see
    :class:`Constant`) or a callable into a callable."""
    if callable(perturbation):
        return perturbation
    if isinstance(perturbation, (np.ndarray, jax.Array, float, int, list, tuple)) and not isinstance(
        perturbation, bool
    ):
        return Constant(perturbation)
    if perturbation == "zeros":
        return Zeros()
    if perturbation == "mean":
        return Mean()
    if perturbation == "channel_mean":
        return ChannelMean()
    if perturbation == "uniform":
        return Uniform(float(low), float(high))
    if perturbation == "blur":
        return Blur(float(blur_sigma))
    raise ValueError(
        f"perturbation must be one of {PERTURBATIONS}, a constant baseline (a scalar or one value per "
        f"channel) or a callable (key, image) -> replacement; "
        f"got {perturbation!r}."
    )


def resolve_key(key: jax.Array | None) -> jax.Array:
    """``None`` -> ``jax.random.key(0)``; a raw ``uint32[2]`` key is wrapped into a typed key."""
    if key is None:
        return jax.random.key(0)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax PRNG key (jax.random.key(seed)) or None; got {type(key).__name__}.")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key (shape ()); got shape {key.shape}.")
        return key
    if key.shape != (2,) or key.dtype != jnp.uint32:
        raise TypeError(
            f"key must be a jax PRNG key (jax.random.key(seed)) or None; got an array of "
            f"shape {key.shape} and dtype {key.dtype}."
        )
    return jax.random.wrap_key_data(key)


def image_keys(key: jax.Array, batch: int) -> jax.Array:
    """One key per example, ``(batch,)``. Example i's noise and random order depend only on
    ``key``, ``i`` and ``batch`` — never on chunking or sharding."""
    return jax.random.split(key, batch)


def random_order_key(image_key: jax.Array) -> jax.Array:
    """Key of an image's random order, ``fold_in(image_key, 1)``. The image key itself
    drives the replacement noise, so MoRF, LeRF and the random baseline of one image see the
    same replacement values (and ranked orders need no key derivation at all)."""
    return jax.random.fold_in(image_key, 1)


def perturb(image: jax.Array, replacement: jax.Array, ranks: jax.Array, counts: jax.Array) -> jax.Array:
    """Inputs for every count at once: ``(K, *image.shape)`` from one example (``(K, H, W, C)``
    from an image with its ``(H, W)`` rank map).

    Row k is ``image`` with the positions whose region rank is ``< counts[k]`` taken from
    ``replacement`` in all channels (``counts[k] = 0`` returns ``image`` exactly). ``ranks``
    has the region axes of ``image``: all of its axes, or all but the last (the channels).
    """
    channels = (1,) * (image.ndim - ranks.ndim)
    mask = ranks.reshape((1,) + ranks.shape + channels) < counts.reshape((-1,) + (1,) * image.ndim)
    return jnp.where(mask, replacement[None], image[None])
