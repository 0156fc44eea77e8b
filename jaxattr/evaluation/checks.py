"""Completeness checks of an attribution: does it add up to what it explains?

* :func:`summation_to_delta` — DeepLIFT (Shrikumar et al. 2016, eq. 1), Integrated Gradients
  (completeness), Shapley-type methods: ``Σ_i C_i = f_t(x) − f_t(x₀)``.
* :func:`conservation` — LRP (Bach et al. 2015) and Deep Taylor started from the logit:
  ``Σ_i R_i = f_t(x)`` when no relevance is absorbed (bias-free layers, ε → 0); where the gap
  goes, segment by segment, is what ``ja.engine.ledger`` reports.
* :func:`batch_independence` — the precondition of every per-example attribution: example
  ``i``'s logits do not depend on the other examples of the batch (they do under BatchNorm with
  batch statistics, i.e. a model in training mode).

Both take any relevance array and any pure ``apply_fn(params, x) -> logits``; like the rest of
:mod:`jaxattr.evaluation` they do not import the attribution engine. Each returns per-example
``(total, expected, abs error)`` so a test or a report can show all three.

Example:
    >>> import jax.numpy as jnp, jaxattr as ja
    >>> from jaxattr.evaluation.checks import summation_to_delta
    >>> f = lambda p, x: jnp.tanh(x @ p)
    >>> p, x = jnp.ones((3, 2)), jnp.ones((4, 3))
    >>> C = ja.attribute(f, p, x, method=ja.DeepLIFT(0.0))
    >>> bool(summation_to_delta(f, p, x, C, 0.0).error.max() < 1e-5)
    True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = ["SumToDelta", "Conservation", "summation_to_delta", "conservation",
           "batch_independence"]


class SumToDelta(NamedTuple):
    """Per-example ``total = Σ C``, ``delta = f_t(x) − f_t(x₀)`` and ``error = |total − delta|``."""

    total: jax.Array
    delta: jax.Array
    error: jax.Array


class Conservation(NamedTuple):
    """Per-example ``total = Σ R``, the target ``logit`` and ``error = |total − logit|``."""

    total: jax.Array
    logit: jax.Array
    error: jax.Array


def _target_logit(logits, target):
    if target is None:
        raise ValueError("target is None")  # resolved by the callers
    return jnp.take_along_axis(logits, jnp.asarray(target).reshape(-1, 1), axis=1)[:, 0]


def _targets(apply_fn, params, x, target):
    if target is not None:
        t = jnp.asarray(target)
        return jnp.broadcast_to(t, (x.shape[0],)) if t.ndim == 0 else t
    return jnp.argmax(apply_fn(params, x), axis=-1)


def _per_example_sum(relevance, x):
    relevance = jnp.asarray(relevance)
    if relevance.shape != x.shape:
        raise ValueError(f"relevance must have x's shape {x.shape}, got {relevance.shape}")
    return relevance.reshape(relevance.shape[0], -1).sum(axis=1)


def summation_to_delta(apply_fn: Callable, params: Any, x: jax.Array, relevance: jax.Array,
                       reference: Any = 0.0, target: Optional[jax.Array] = None, *,
                       average_references: bool = False) -> SumToDelta:
    """Check ``Σ_i C_i = f_t(x) − f_t(x₀)`` per example.

    Args:
        apply_fn: ``(params, x) -> logits`` of shape (batch, classes), the function explained.
        params: its parameters.
        x: inputs (batch, ...).
        relevance: contributions, x's shape.
        reference: the reference x₀ used for the contributions: a scalar, an array broadcastable
            to x's shape, or a callable ``x -> x₀``; with ``average_references`` a stack
            ``(K, ...)`` whose mean output is the baseline (as ``ja.DeepLIFT`` averages them).
        target: class per example (batch,) or a scalar; ``None``: argmax of the logits at x.

    Returns:
        :class:`SumToDelta` of per-example arrays ``(total, delta, error)``.
    """
    x = jnp.asarray(x)
    apply_fn = jax.jit(apply_fn)  # one program instead of one dispatch per primitive
    target = _targets(apply_fn, params, x, target)
    ref = reference(x) if callable(reference) else reference
    ref = jnp.asarray(ref, dtype=x.dtype)
    out = _target_logit(apply_fn(params, x), target)
    if average_references:
        rest = ref.shape[1:]
        ref = ref.reshape(ref.shape[:1] + (1,) * (x.ndim - len(rest)) + rest)
        refs = jnp.broadcast_to(ref, ref.shape[:1] + x.shape)
        base = jnp.mean(jnp.stack([_target_logit(apply_fn(params, r), target) for r in refs]), 0)
    else:
        try:
            ref = jnp.broadcast_to(ref, x.shape)
        except ValueError:
            raise ValueError(f"reference of shape {ref.shape} does not broadcast to x's shape "
                             f"{x.shape}") from None
        base = _target_logit(apply_fn(params, ref), target)
    total = _per_example_sum(relevance, x)
    delta = out - base
    return SumToDelta(total, delta, jnp.abs(total - delta))


def conservation(apply_fn: Callable, params: Any, x: jax.Array, relevance: jax.Array,
                 target: Optional[jax.Array] = None) -> Conservation:
    """Check ``Σ_i R_i = f_t(x)`` per example (LRP/Deep Taylor relevance started from the logit).

    A gap ``f_t(x) − Σ_i R_i`` is the relevance absorbed on the way: by biases and the
    stabiliser ε, by AttnLRP's softmax rule, by constants such as a ViT's cls token. To see
    *where*, ``ja.engine.ledger(apply_fn, params, x, method, target)`` lists what each segment
    absorbed, per example; its rows sum to this gap (``ja.engine.format_ledger`` prints them).
    This module does not import the engine: the ledger is a separate call.

    Returns:
        :class:`Conservation` of per-example arrays ``(total, logit, error)``.
    """
    x = jnp.asarray(x)
    apply_fn = jax.jit(apply_fn)
    target = _targets(apply_fn, params, x, target)
    logit = _target_logit(apply_fn(params, x), target)
    total = _per_example_sum(relevance, x)
    return Conservation(total, logit, jnp.abs(total - logit))


def batch_independence(apply_fn: Callable, params: Any, x: jax.Array) -> jax.Array:
    """How much the other examples of the batch move each example's logits: the model is run on
    ``x`` and on ``x`` with example 0 replaced by a copy of example 1, and the result is the
    largest change of the logits of examples 1, 2, … relative to the largest logit (a float:
    0, or float rounding, when the examples are independent).

    Every jaxattr attribution is per example: ``apply_fn(params, x)[i]`` must depend on ``x[i]``
    alone, as a model in inference mode does. Flax's ``nn.BatchNorm(use_running_average=False)``
    (training mode) normalises with the batch's statistics, so each example's attribution
    would then depend on the rest of the batch. The attribution engine refuses such a model
    from its trace (:mod:`jaxattr.engine.batch`, ``ja.BatchCouplingError``), where it can follow
    the batch axis; this check measures the coupling of any function numerically (of example
    0 on the others: a model in which only later examples reach earlier ones shows 0 here).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.evaluation.checks import batch_independence
        >>> x = jnp.arange(6.0).reshape(3, 2)
        >>> float(batch_independence(lambda p, x: x @ p, jnp.ones((2, 2)), x))
        0.0
        >>> float(batch_independence(lambda p, x: (x - x.mean(0)) @ p, jnp.ones((2, 2)), x)) > 0.1
        True
    """
    x = jnp.asarray(x)
    if x.shape[0] < 2:
        raise ValueError(f"batch_independence needs a batch of at least 2 examples, got "
                         f"{x.shape[0]}")
    apply_fn = jax.jit(apply_fn)
    y = apply_fn(params, x)
    y_other = apply_fn(params, x.at[0].set(x[1]))
    scale = jnp.maximum(jnp.max(jnp.abs(y)), jnp.finfo(y.dtype).tiny)
    return jnp.max(jnp.abs(y[1:] - y_other[1:])) / scale
