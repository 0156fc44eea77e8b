"""Evaluate several attribution methods at once: AOPC and confidence drops in a tidy table.

The defaults are the Amorim et al. (2020) protocol as this project reads it: single pixels
(``region=1``), ``steps=10`` AOPC steps of 10 % of the pixels each, uniform random values in
the data range, softmax confidence, drops at 5–75 % of the pixels, plus the random-order
baseline as method ``"random"`` (same key, so it sees the same replacement values).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from jaxattr import precision as _precision
from jaxattr.evaluation import regions
from jaxattr.evaluation.aopc import (
    DEFAULT_FRACTIONS,
    ApplyFn,
    _check_chunk_size,
    _check_images,
    _check_model,
    _check_perturbation,
    _check_score,
    _check_target,
    _curve_counts,
    _regions_of,
    _run,
    aopc,
)
from jaxattr.evaluation.perturbation import PerturbationFn, resolve_perturbation

RelevanceFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
RANDOM = "random"


def _host(array: Any) -> np.ndarray:
    """A numpy copy; a global array sharded across processes is gathered onto every process."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


def drop_column(fraction: float) -> str:
    """Column name of a confidence-drop fraction: 0.05 -> ``"drop_5"``, 0.075 -> ``"drop_7.5"``."""
    return f"drop_{100 * fraction:g}"


@functools.partial(jax.jit, static_argnums=0)
def _predict(apply_fn: ApplyFn, params: Any, x: jax.Array) -> jax.Array:
    return jnp.argmax(apply_fn(params, x), axis=-1).astype(jnp.int32)


def evaluate(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: jax.Array | None,
    explanations: Mapping[str, jax.Array | RelevanceFn],
    *,
    region: int | Sequence[int] = 1,
    steps: int = 10,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    perturbation: str | PerturbationFn | jax.typing.ArrayLike = "uniform",
    score: str = "probability",
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
    blur_sigma: float = 1.0,
    random_baseline: bool = True,
    index: Sequence[Any] | np.ndarray | None = None,
    return_curves: bool = False,
    shard: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    reduce: str = "sum",
    precision: str | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """AOPC and confidence drops for every method, one row per image × method.

    For each method the AOPC curve (``steps`` steps) and the drops (``fractions``) come from
    one perturbation pass: the union of their region counts is evaluated once (see
    :func:`jaxattr.evaluation.aopc.scores_at_counts`), MoRF order.

    Args:
      apply_fn, params, x: as in :func:`jaxattr.evaluation.perturbation_curve` (any layout:
        ``(batch, features)``, ``(batch, length, channels)``, NHWC images, ...).
      target: int array ``(batch,)``, an int (the same class for every example) or None
        (= argmax of ``apply_fn(params, x)``, computed once and used for every method and
        for the relevance callables).
      explanations: ``{name: relevance}`` where relevance is an array of ``x``'s shape or a
        callable ``(params, x, target) -> relevance`` (e.g. ``jaxattr.explain(apply_fn,
        method)``).
      region, steps, perturbation, score, key, chunk_size, low, high, blur_sigma, shard,
        devices, progress, reduce, precision: as in :func:`jaxattr.evaluation.perturbation_curve`
        (defaults: the paper's protocol, ``region=1``, ``steps=10``; regions ranked by their
        *signed* relevance summed over channels, ``reduce="sum"``).
      fractions: confidence-drop fractions (as in
        :func:`jaxattr.evaluation.confidence_drop`).
      random_baseline: add method ``"random"`` (random order, the same key).
      index: labels for the images (default ``0..batch-1``), e.g. dataset indices.
      return_curves: also return the perturbation curves (no extra model evaluations).

    ``x`` (and relevance arrays) may be a global batch sharded across processes
    (``jax.distributed``: ``jax.make_array_from_process_local_data`` over a mesh of every
    process's devices); every process then makes the same call and gets the whole table, the
    same numbers as one device computes.

    Returns:
      DataFrame with columns ``method, index, target, aopc, drop_5, drop_10, drop_20,
      drop_30, drop_40, drop_50, drop_75`` (one ``drop_*`` per fraction); with
      ``return_curves``, ``(table, {method: curve (batch, steps + 1)})``.

    Example (``ja.explain(model.apply, ja.Gradient())`` is a typical relevance callable):
      >>> import jax.numpy as jnp
      >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
      >>> w = jnp.ones((4 * 4, 2)).at[:, 1].set(-1.0)
      >>> x = jnp.linspace(0, 1, 2 * 16).reshape(2, 4, 4, 1)
      >>> gradient_x_input = lambda w, x, target: x * w[:, 0].reshape(1, 4, 4, 1)
      >>> df = evaluate(apply_fn, w, x, None, {"gxi": gradient_x_input, "negated": -x},
      ...               steps=8, perturbation="zeros", progress=False)  # 16 pixels, 2 per step
      >>> df.groupby("method")["aopc"].mean().round(3).to_dict()
      {'gxi': 0.138, 'negated': 0.066, 'random': 0.082}
    """
    if not isinstance(explanations, Mapping):
        raise TypeError(f"explanations must be a mapping {{name: relevance or callable}}; got {type(explanations).__name__}.")
    if random_baseline and RANDOM in explanations:
        raise ValueError(f"explanations must not use the name {RANDOM!r} when random_baseline=True; rename it.")
    if not explanations and not random_baseline:
        raise ValueError("explanations is empty and random_baseline=False: nothing to evaluate.")
    x, _ = _check_images(x, x)
    batch = x.shape[0]
    region, n = _regions_of(x, region)
    curve_counts = _curve_counts(x, region, n, steps)
    fractions = regions.check_fractions(fractions)
    drop_counts = regions.fraction_counts(n, fractions)
    counts, where = np.unique(np.concatenate([curve_counts, drop_counts]), return_inverse=True)
    curve_at, drop_at = where[: curve_counts.size], where[curve_counts.size :]
    if index is None:
        index = np.arange(batch)
    elif len(index) != batch:
        raise ValueError(f"index must have one label per image ({batch}); got {len(index)}.")

    # fail before computing any relevance (the runs below check these again, cheaply)
    _check_perturbation(resolve_perturbation(perturbation, low=low, high=high, blur_sigma=blur_sigma), x)
    _check_score(score)
    _check_chunk_size(chunk_size)
    regions.check_reduce(reduce)
    _precision.check(precision)
    target = _check_target(target, batch, _check_model(apply_fn, params, x))
    if target is None:
        with _precision.context(precision):
            target = _predict(apply_fn, params, x)
    options = dict(
        region=region, perturbation=perturbation, score=score, key=key, chunk_size=chunk_size, low=low, high=high,
        blur_sigma=blur_sigma, shard=shard, devices=devices, progress=progress, reduce=reduce,
        precision=precision,
    )
    runs = [(name, value, "morf") for name, value in explanations.items()]
    if random_baseline:
        runs.append((RANDOM, jnp.zeros_like(x), "random"))

    frames, curves = [], {}
    for name, value, order in tqdm(runs, desc="evaluate", unit="method", disable=not progress or len(runs) == 1):
        try:
            _, relevance = _check_images(x, value(params, x, target) if callable(value) else value)
        except (ValueError, TypeError) as error:
            raise type(error)(f"explanations[{name!r}]: {error}") from error
        scores, _ = _run(apply_fn, params, x, target, relevance, counts, order=order, **options)
        scores = _host(scores)
        curves[name] = scores[:, curve_at]
        table = {
            "method": name,
            "index": index,
            "target": _host(target),
            "aopc": np.asarray(aopc(curves[name])),
        }
        for fraction, column in zip(fractions, drop_at):
            table[drop_column(fraction)] = scores[:, 0] - scores[:, column]
        frames.append(pd.DataFrame(table))
    table = pd.concat(frames, ignore_index=True)
    return (table, curves) if return_curves else table
