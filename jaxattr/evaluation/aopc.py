"""Perturbation curves, AOPC and confidence drop.

The region-perturbation protocol of Samek et al. (2017), "Evaluating the visualization of
what a deep neural network has learned", IEEE TNNLS 28(11), arXiv:1509.06321: regions are
removed in the order given by a relevance map and the classifier's score for the target
class is recorded after each step,

.. math::

    x^{(0)} = x, \\qquad x^{(k)} = x \\text{ with the top } c_k \\text{ regions perturbed},
    \\qquad c_k = \\min(k \\lceil n / L \\rceil, n), \\quad k = 0..L,

    \\mathrm{AOPC} = \\frac{1}{L+1} \\sum_{k=0}^{L} \\big(f(x^{(0)}) - f(x^{(k)})\\big),

    \\mathrm{Drop}(p) = f(x^{(0)}) - f(x^{(c)}), \\quad c = \\lceil p \\cdot n \\rceil
    \\text{ for a fraction } p .

Each step starts from the original input (not from the previous step), with the same
replacement values per position at every step. A high MoRF AOPC means the relevance found what
the model uses; the random order is the baseline.

The paper reproduced here (Amorim et al., "Interpretability vs. Complexity: the friction in
deep neural networks", IJCNN 2020) replaces the most relevant *pixels* by a random RGB value
drawn uniformly, uses the classifier's confidence (softmax probability) for the class,
reports drops at 5, 10, 20, 30, 40, 50 and 75 % of the pixels and computes AOPC with
"perturbation steps corresponding to 10 %". This project reads that as ``region=1``,
``steps=10`` (ten steps of 10 % of the pixels each), ``perturbation="uniform"``,
``score="probability"`` — see :func:`jaxattr.evaluation.evaluate`, whose defaults are these.

Inputs of any layout (:mod:`jaxattr.evaluation.regions`): ``(batch, features)`` tabular rows
(each feature, or each group of ``region`` features, is a region), ``(batch, length,
channels)`` signals and sequences, ``(batch, height, width, channels)`` NHWC images, and in
general ``(batch, *axes, channels)`` with one region size per axis. Binary classifiers with
a single logit are scored with the sigmoid (``score="probability"`` or ``"sigmoid"``).

Implementation: per example, one rank map (``regions.pixel_ranks``) and one replacement
(``perturbation``) are computed; the input of step k is ``where(rank < c_k, replacement,
x)``, built for all examples × steps by broadcasting and pushed through ``apply_fn`` as one
batch of ``batch·(L+1)`` inputs — one XLA program per shape. ``chunk_size`` splits that batch
into blocks of at most ``chunk_size`` model evaluations (steps first, then images), run by
one compiled block function in a Python loop with a tqdm bar, so peak memory is one block's
whatever ``L``. ``shard=True`` splits the batch over the local devices
(``NamedSharding(mesh, PartitionSpec("batch"))``). A global batch sharded across processes
(``jax.distributed``, a mesh over every process's devices) is computed where it lies: every
process makes the same call and holds its rows of the result.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxattr import precision as _precision
from jaxattr.engine.batch import check_batch_independent
from jaxattr.engine.trace import Lit, trace
from jaxattr.evaluation import regions
from jaxattr.evaluation.perturbation import (
    PerturbationFn,
    image_keys,
    perturb,
    random_order_key,
    resolve_key,
    resolve_perturbation,
)

ApplyFn = Callable[[Any, jax.Array], jax.Array]
SCORES = ("probability", "logit", "accuracy", "sigmoid")
DEFAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75)


# --------------------------------------------------------------------------- validation


@jax.jit
def _count_nonfinite(array: jax.Array) -> jax.Array:
    return array.size - jnp.count_nonzero(jnp.isfinite(array))


def _concrete(value: jax.Array) -> int | None:
    """``int(value)``, or None inside a caller's ``jit`` where values are unknown (shapes
    are still checked there; value checks are skipped)."""
    try:
        return int(value)
    except jax.errors.ConcretizationTypeError:
        return None


def _check_finite(name: str, array: jax.Array) -> None:
    bad = _concrete(_count_nonfinite(array))
    if bad:
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or Inf); all values must be finite.")


def _check_images(x: Any, relevance: Any) -> tuple[jax.Array, jax.Array]:
    x, relevance = jnp.asarray(x), jnp.asarray(relevance)
    regions.spatial_shape(x.shape)  # (batch, features) or (batch, *axes, channels)
    if x.shape[0] == 0:
        raise ValueError(f"x must hold at least one example; got batch size 0 (shape {x.shape}).")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must have a floating dtype; got {x.dtype}.")
    if relevance.shape != x.shape:
        raise ValueError(f"relevance must have x's shape {x.shape}; got {relevance.shape}.")
    if not (jnp.issubdtype(relevance.dtype, jnp.floating) or jnp.issubdtype(relevance.dtype, jnp.integer)):
        raise TypeError(f"relevance must be a real array; got dtype {relevance.dtype}.")
    _check_finite("x", x)
    _check_finite("relevance", relevance)
    return x, relevance


def _check_model(apply_fn: ApplyFn, params: Any, x: jax.Array) -> int:
    """Trace (not run) ``apply_fn`` once; return the number of classes. A model that combines
    the examples of its batch (training mode) raises ``BatchCouplingError``: each perturbed
    copy's score would depend on the others in its chunk (:mod:`jaxattr.engine.batch`)."""
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a callable (params, x) -> logits; got {type(apply_fn).__name__}.")
    try:
        graph = trace(apply_fn, params, x)  # one trace: the output's shape and the batch check
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(
            f"apply_fn(params, x) fails on x of shape {x.shape}, read as {regions.layout(x.shape)}: {error}"
        ) from error
    shapes = [np.shape(a.value) if isinstance(a, Lit) else graph.avals[a].shape for a in graph.outvars]
    shape = shapes[0] if jax.tree_util.treedef_is_leaf(graph.out_tree) else None
    if shape is None or len(shape) != 2 or shape[0] != x.shape[0]:
        raise ValueError(
            f"apply_fn(params, x) must return logits of shape (batch, n_classes) with batch={x.shape[0]}; "
            f"got {shape if shape is not None else graph.out_tree}."
        )
    check_batch_independent(graph)
    return int(shape[1])


def _check_target(target: Any, batch: int, n_classes: int) -> jax.Array | None:
    """None, an int (one class for every example, as ``jaxattr.attribute`` takes it) or an int
    array ``(batch,)``; returned as int32 ``(batch,)``."""
    if target is None:
        return None
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(
            f"target must be None, an int or an integer array of shape (batch,); got dtype {target.dtype}."
        )
    if target.ndim == 0:
        target = jnp.broadcast_to(target, (batch,))
    if target.shape != (batch,):
        raise ValueError(
            f"target must be None, an int or an integer array of shape (batch,) = ({batch},); got {target.shape}."
        )
    low, high = _concrete(target.min()), _concrete(target.max())
    if low is not None and high is not None:
        if low < 0 or high >= n_classes:
            raise ValueError(
                f"target values must lie in [0, n_classes) = [0, {n_classes}); got min {low}, max {high}."
            )
    return target.astype(jnp.int32)


def _check_score(score: str) -> str:
    if not isinstance(score, str) or score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {score!r}.")
    return score


def _check_perturbation(perturbation: PerturbationFn, x: jax.Array) -> None:
    """Trace (not run) the perturbation on one example: a preset that does not apply to the
    layout (blur on tabular rows) or a callable of the wrong shape fails here, before any
    relevance is computed or program compiled."""
    example = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    out = jax.eval_shape(perturbation, jax.random.key(0), example)
    if getattr(out, "shape", None) != example.shape:
        raise ValueError(
            f"a perturbation callable must return the example's shape {example.shape}; "
            f"got {getattr(out, 'shape', type(out).__name__)}."
        )


def _check_chunk_size(chunk_size: Any) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be None or a positive int (model evaluations per chunk); got {chunk_size!r}.")
    return int(chunk_size)


def _is_process_local(array: Any) -> bool:
    """False for a global ``jax.Array`` spanning other processes' devices (``jax.distributed``:
    built with ``jax.make_array_from_process_local_data``); every step then runs as one program
    over all processes, which must all make the same call."""
    if not isinstance(array, jax.Array) or isinstance(array, jax.core.Tracer):
        return True  # under a caller's jit: the caller's program decides where it runs
    return array.is_fully_addressable


def _check_devices(shard: bool, devices: Sequence[jax.Device] | None) -> list[jax.Device] | None:
    if devices is not None:
        devices = list(devices)
        if not devices:
            raise ValueError("devices must name at least one device; got an empty sequence.")
        return devices
    return list(jax.local_devices()) if shard else None


# --------------------------------------------------------------------------- compiled parts


@dataclasses.dataclass(frozen=True)
class _Ranking:
    """Static settings of the preparation step (hashable, a ``jit`` static argument)."""

    region: tuple[int, ...]  # one size per region axis
    order: str
    perturbation: PerturbationFn
    reduce: str = "sum"


def _prepare_impl(x, relevance, keys, ranking: _Ranking):
    """Per example: rank map over the region axes (``(H, W)`` for images) and replacement
    (``x``'s shape without the batch axis)."""

    def one(image, rel, key):
        order_key = random_order_key(key) if ranking.order == "random" else key  # ranked orders ignore it
        ranks = regions.pixel_ranks(rel, ranking.region, ranking.order, order_key, ranking.reduce)
        replacement = jnp.asarray(ranking.perturbation(key, image), image.dtype)
        if replacement.shape != image.shape:
            raise ValueError(
                f"a perturbation callable must return the example's shape {image.shape}; got {replacement.shape}."
            )
        return ranks, replacement

    return jax.vmap(one)(x, relevance, keys)


def _logits_impl(apply_fn, params, x, replacement, ranks, counts):
    """``(b, k, n_classes)`` logits of every image × count, as one model batch of b·k."""
    inputs = jax.vmap(perturb, in_axes=(0, 0, 0, None))(x, replacement, ranks, counts)
    b, k = inputs.shape[:2]
    logits = apply_fn(params, inputs.reshape((b * k,) + x.shape[1:]))
    return logits.reshape(b, k, -1)


def _score_impl(logits, target, score: str):
    """Scores ``(b, k)`` at the target class; target None -> argmax of the unperturbed logits
    (count 0 is always column 0).

    One logit (a binary classifier): ``"probability"`` is ``σ(z)`` (a softmax over one class is
    1 whatever the input) and ``"accuracy"`` is ``z > 0`` (still predicted positive)."""
    if target is None:
        target = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
    at_target = lambda a: jnp.take_along_axis(a, target[:, None, None], axis=-1)[..., 0]
    logits = logits.astype(jnp.float32)
    single = logits.shape[-1] == 1
    if score == "sigmoid" or (score == "probability" and single):
        values = jax.nn.sigmoid(at_target(logits))
    elif score == "probability":
        values = at_target(jax.nn.softmax(logits, axis=-1))
    elif score == "logit":
        values = at_target(logits)
    elif single:
        values = (logits[..., 0] > 0).astype(jnp.float32)
    else:
        values = (jnp.argmax(logits, axis=-1) == target[:, None]).astype(jnp.float32)
    return values, target


def _inputs_impl(x, relevance, keys, counts, ranking: _Ranking):
    ranks, replacement = _prepare_impl(x, relevance, keys, ranking)
    return jax.vmap(perturb, in_axes=(0, 0, 0, None))(x, replacement, ranks, counts)


_prepare = jax.jit(_prepare_impl, static_argnames="ranking")
_inputs = jax.jit(_inputs_impl, static_argnames="ranking")
_logits = jax.jit(_logits_impl, static_argnames="apply_fn")
_score = jax.jit(_score_impl, static_argnames="score")


@functools.partial(jax.jit, static_argnames=("apply_fn", "ranking", "score"))
def _program(apply_fn, params, x, relevance, keys, counts, target, ranking, score):
    """The whole evaluation as one XLA program (the unchunked path)."""
    ranks, replacement = _prepare_impl(x, relevance, keys, ranking)
    return _score_impl(_logits_impl(apply_fn, params, x, replacement, ranks, counts), target, score)


# --------------------------------------------------------------------------- orchestration


def _block_sizes(batch: int, n_counts: int, chunk_size: int | None, n_devices: int) -> tuple[int, int, int]:
    """``(padded batch, images per block, counts per block)``.

    The batch is padded only to a multiple of the device count. A block holds at most
    ``chunk_size`` model evaluations (at least one image per device): the whole batch × a
    slice of the counts, or (``chunk_size`` < batch) a slice of the images × one count.

    These are the largest block sizes; :func:`_bounds` balances the blocks.
    """
    padded = -(-batch // n_devices) * n_devices
    if chunk_size is None or chunk_size >= padded * n_counts:
        return padded, padded, n_counts
    if chunk_size >= padded:
        return padded, padded, chunk_size // padded
    return padded, min(padded, max(n_devices, chunk_size // n_devices * n_devices)), 1


def _bounds(total: int, most: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of balanced blocks over ``total`` items (a multiple of ``multiple``).

    As few blocks as blocks of at most ``most`` allow (``⌈total / most⌉``), of near-equal size:
    they differ by at most ``multiple`` items (one count, or one image per device), so no
    block is a small remainder and at most two shapes compile. Batch 256 × 17 counts at
    ``chunk_size=4096`` runs as 9 + 8 counts (2304 + 2048 evaluations), not 16 + 1; nothing is
    padded beyond the device multiple.
    """
    units, per = total // multiple, max(most // multiple, 1)
    n_blocks = -(-units // per)
    size, extra = divmod(units, n_blocks)
    stops = np.cumsum([size + (i < extra) for i in range(n_blocks)]) * multiple
    return list(zip([0, *stops[:-1].tolist()], stops.tolist()))


def _pad(array: jax.Array | None, size: int) -> jax.Array | None:
    """Pad the batch axis to ``size`` by repeating the last item (results are trimmed)."""
    if array is None or array.shape[0] == size:
        return array
    return jnp.concatenate([array, jnp.repeat(array[-1:], size - array.shape[0], axis=0)])


def _regions_of(x: jax.Array, region: Any) -> tuple[tuple[int, ...], int]:
    """Region sizes (one per region axis of ``x``'s layout) and ``n_regions``."""
    shape = regions.spatial_shape(x.shape)
    region = regions.check_region(region, shape, regions.axis_names(x.shape))
    return region, regions.n_regions(shape, region)


def _curve_counts(x: jax.Array, region: tuple[int, ...], n: int, steps: Any) -> np.ndarray:
    """``c_k`` for ``k = 0..L``, warning when the last ones repeat (see ``regions.step_counts``)."""
    steps = regions.check_steps(steps, regions.spatial_shape(x.shape), region)
    regions.warn_repeated_steps(n, steps, stacklevel=4)
    return regions.step_counts(n, steps)


def _images_and_regions(x: Any, relevance: Any, region: Any) -> tuple[jax.Array, jax.Array, tuple[int, ...], int]:
    """Validate the inputs, relevance and region sizes; return them with ``n_regions``."""
    x, relevance = _check_images(x, relevance)
    return (x, relevance) + _regions_of(x, region)


def _run(
    apply_fn, params, x, target, relevance, counts, *, region, order="morf", perturbation="uniform",
    score="probability", key=None, chunk_size=None, low=0.0, high=1.0, blur_sigma=1.0, shard=False,
    devices=None, progress=True, reduce="sum", precision=None,
) -> tuple[jax.Array, jax.Array]:
    """Scores ``(batch, len(counts))`` and the target used; x, relevance, region, counts are
    already validated. The model's forwards run under ``precision``
    (:mod:`jaxattr.precision`; jax keys its compiled programs on it)."""
    with _precision.context(_precision.check(precision)):
        return _run_blocks(
            apply_fn, params, x, target, relevance, counts, region=region, order=order,
            perturbation=perturbation, score=score, key=key, chunk_size=chunk_size, low=low,
            high=high, blur_sigma=blur_sigma, shard=shard, devices=devices, progress=progress,
            reduce=reduce,
        )


def _run_blocks(
    apply_fn, params, x, target, relevance, counts, *, region, order, perturbation, score, key,
    chunk_size, low, high, blur_sigma, shard, devices, progress, reduce,
) -> tuple[jax.Array, jax.Array]:
    ranking = _Ranking(
        region, regions.check_order(order), resolve_perturbation(perturbation, low=low, high=high, blur_sigma=blur_sigma),
        regions.check_reduce(reduce),
    )
    _check_perturbation(ranking.perturbation, x)
    score = _check_score(score)
    chunk_size = _check_chunk_size(chunk_size)
    devices = _check_devices(shard, devices)
    if not _is_process_local(x):
        devices = None  # a global batch (multi-process) is already sharded over its mesh: keep it
    batch = x.shape[0]
    target = _check_target(target, batch, _check_model(apply_fn, params, x))
    keys = image_keys(resolve_key(key), batch)

    padded, per_block, per_count_block = _block_sizes(batch, len(counts), chunk_size, len(devices) if devices else 1)
    x, relevance, keys, target = (_pad(a, padded) for a in (x, relevance, keys, target))
    if devices:
        mesh = Mesh(np.asarray(devices), ("batch",))
        put_batch = functools.partial(jax.device_put, device=NamedSharding(mesh, PartitionSpec("batch")))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    else:
        put_batch = lambda a: a

    if per_block == padded and per_count_block == len(counts):
        args = (put_batch(x), put_batch(relevance), put_batch(keys), jnp.asarray(counts, jnp.int32))
        scores, target = _program(apply_fn, params, *args, None if target is None else put_batch(target), ranking, score)
        return scores[:batch], target[:batch]

    counts = jnp.asarray(counts, jnp.int32)
    count_blocks = _bounds(len(counts), per_count_block)
    image_blocks = _bounds(padded, per_block, len(devices) if devices else 1)
    blocks = []
    with tqdm(total=len(image_blocks) * len(count_blocks), desc="perturbation", unit="chunk", disable=not progress) as bar:
        for start, stop in image_blocks:
            xs, rs, ks = (put_batch(a[start:stop]) for a in (x, relevance, keys))
            ranks, replacement = _prepare(xs, rs, ks, ranking)
            row = []
            for j, k in count_blocks:
                row.append(_logits(apply_fn, params, xs, replacement, ranks, counts[j:k]))
                if not isinstance(row[-1], jax.core.Tracer):  # under a caller's jit there is nothing to wait for
                    row[-1].block_until_ready()  # keeps the bar honest; the next block is dispatched right after
                bar.update()
            blocks.append(jnp.concatenate(row, axis=1))
    logits = jnp.concatenate(blocks, axis=0)[:batch]
    return _score(logits, None if target is None else target[:batch], score)


def scores_at_counts(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: jax.Array | None,
    relevance: jax.Array,
    counts: Sequence[int] | np.ndarray,
    *,
    region: int | Sequence[int] = 4,
    **options: Any,
) -> tuple[jax.Array, jax.Array]:
    """Scores after perturbing the top ``counts[j]`` regions, for any list of counts.

    The engine behind :func:`perturbation_curve` and :func:`confidence_drop`; ``options``
    are their keyword arguments (``order``, ``perturbation``, ``score``, ``key``,
    ``chunk_size``, ``low``, ``high``, ``blur_sigma``, ``shard``, ``devices``,
    ``progress``, ``reduce``, ``precision``). ``counts`` must start with 0 (the unperturbed input) and lie in
    ``[0, n_regions]``.

    Returns:
      ``(scores, target)``: scores ``(batch, len(counts))`` and the target used (the argmax
      of the unperturbed logits where ``target`` is None).
    """
    x, relevance, region, n = _images_and_regions(x, relevance, region)
    counts = np.asarray(counts)
    if (
        counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer)
        or counts[0] != 0 or counts.min() < 0 or counts.max() > n
    ):
        raise ValueError(
            f"counts must be a 1-D integer sequence starting with 0, within [0, n_regions] = [0, {n}]; got {counts}."
        )
    return _run(apply_fn, params, x, target, relevance, counts.astype(np.int32), region=region, **options)


# --------------------------------------------------------------------------- public API


def perturbation_curve(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: jax.Array | None,
    relevance: jax.Array,
    *,
    region: int | Sequence[int] = 4,
    steps: int = 16,
    order: str = "morf",
    perturbation: str | PerturbationFn | jax.typing.ArrayLike = "uniform",
    score: str = "probability",
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
    blur_sigma: float = 1.0,
    shard: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    reduce: str = "sum",
    precision: str | None = None,
) -> jax.Array:
    """Region-perturbation curve ``f(x^{(k)})``, ``k = 0..L`` (Samek et al. 2017).

    Args:
      apply_fn: pure ``(params, x) -> logits`` with logits ``(batch, n_classes)``
        (e.g. a Flax ``model.apply``). A static ``jit`` argument: pass the same object on
        every call to reuse the compiled program.
      params: ``apply_fn``'s parameters (any pytree).
      x: inputs, floating, finite, in one of the layouts of :mod:`jaxattr.evaluation.regions`:
        ``(batch, features)`` (tabular rows, embeddings: the features are the region axis,
        no channels), ``(batch, length, channels)`` (signals, sequences such as one-hot DNA
        ``(batch, 200, 4)``), ``(batch, height, width, channels)`` (NHWC images) or in
        general ``(batch, *axes, channels)``. The last axis of a 3-D or larger ``x`` is
        always the channels: give single-channel images and signals a channel axis
        (``x[..., None]``).
      target: int array ``(batch,)`` of classes, an int (the same class for every example)
        or None for the argmax of the unperturbed logits.
      relevance: array of ``x``'s shape (any attribution). Reduced over channels by
        ``reduce``, then summed over each region (edge regions are smaller when an axis is not
        a multiple of its region size).
      region: region size, an int (the same on every region axis: ``r×r`` squares on images,
        ``r`` positions of a sequence, ``r`` consecutive features of a row) or a tuple with
        one size per region axis (``(4, 2)`` rectangles on images), each in ``[1, axis
        size]``; ``n = Π_i ⌈axis_i/r_i⌉`` regions.
      steps: ``L``, ``1 ≤ L ≤ n``; step k perturbs the top ``c_k = min(k·⌈n/L⌉, n)`` regions
        (cumulatively: each step starts from ``x`` with the top ``c_k`` set perturbed). When
        ``(L − 1)·⌈n/L⌉ ≥ n`` the last columns repeat the fully perturbed input, which AOPC
        then weighs more: a :class:`~jaxattr.evaluation.regions.RepeatedStepsWarning` says
        so (``L`` dividing ``n`` never repeats).
      order: ``"morf"`` (most relevant first), ``"lerf"`` (least relevant first) or
        ``"random"`` (the random baseline; uses ``key``). Ties: stable sort on the
        row-major region index.
      perturbation: ``"uniform"`` (``U(low, high)`` per position and channel, the paper's
        random RGB value), ``"zeros"``, ``"mean"`` (the example's scalar mean),
        ``"channel_mean"`` (the example's per-channel mean: a sequence's mean token
        embedding), ``"blur"`` (Gaussian along the region axes, ``blur_sigma``; not for
        tabular rows), a constant baseline (an array: a scalar or one value per channel,
        e.g. a ``[MASK]`` embedding: token-level evaluation of ``(batch, tokens,
        features)`` embeddings with ``region=1`` and ``reduce="sum"`` over the features) or
        a callable ``(key, example) -> replacement`` called per example. All channels of a
        perturbed position are replaced.
      score: ``"probability"`` (softmax at the target; the paper's confidence), ``"logit"``,
        ``"accuracy"`` (1.0 where ``argmax == target``) or ``"sigmoid"`` (``σ`` of the
        target logit: binary and multi-label sigmoid outputs). A model with a **single
        logit** (a binary classifier, e.g. :class:`jaxattr.models.GenomicsCNN`) has only
        target 0; its ``"probability"`` is ``σ(z)`` (a softmax over one class would be 1
        everywhere and every AOPC 0) and its ``"accuracy"`` is ``z > 0``.
      key: PRNG key for the uniform noise and the random order; ``None`` means
        ``jax.random.key(0)``. Image i uses ``jax.random.split(key, batch)[i]``, so the result
        is deterministic given ``key`` and the batch, independent of chunking and sharding.
        The same key gives every method the same noise (common random numbers).
      chunk_size: at most this many model evaluations at once (None: all ``batch·(L+1)`` in
        one program; with sharding at least one image per device). Chunked and unchunked
        runs compute the same thing; they agree bitwise wherever the model's own float
        results do not depend on its batch size (XLA's CPU kernels may round differently
        by batch size, ~1 ulp).
      low, high: data range for ``"uniform"``.
      blur_sigma: Gaussian sigma in positions for ``"blur"``.
      shard: split the batch over all local devices (``devices`` picks them and implies it).
      progress: show a tqdm bar when the work is split into chunks.
      reduce: how a position's channels become its score before the region sum
        (:func:`jaxattr.evaluation.regions.region_scores`): ``"sum"`` (default) sums the
        *signed* relevance, so positive and negative channels cancel and negative evidence
        ranks last under MoRF; ``"abs_sum"`` sums ``|R|``; ``"l2"`` takes ``‖R_{ij:}‖₂``.
      precision: of the model's forwards, ``"float32"`` (exact), ``"fast"`` or ``"bfloat16"``;
        None: the active ``jax.default_matmul_precision`` if set, else ``"float32"``
        (:mod:`jaxattr.precision`).

    Returns:
      ``(batch, L + 1)`` float32 scores; column 0 is the unperturbed input.

    Example (a linear model, relevance = each input's exact contribution to logit 0):
      >>> import jax.numpy as jnp
      >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
      >>> w = jnp.ones((8 * 8 * 3, 2)).at[:, 1].set(-1.0)
      >>> x = jnp.full((1, 8, 8, 3), 0.5)
      >>> relevance = x * w[:, 0].reshape(8, 8, 3)
      >>> curve = perturbation_curve(apply_fn, w, x, None, relevance, region=2, steps=4,
      ...                            perturbation="zeros", score="logit")
      >>> curve.tolist()  # 16 regions of 2×2×3 inputs worth 0.5 each; 4 regions per step
      [[96.0, 72.0, 48.0, 24.0, 0.0]]
      >>> aopc(curve).tolist()
      [48.0]

    The same on a sequence ``(batch, length, channels)`` and on tabular rows:
      >>> x = jnp.full((1, 8, 3), 0.5)
      >>> apply_fn = lambda w, x: x.reshape(len(x), -1) @ w[: x[0].size]
      >>> perturbation_curve(apply_fn, w, x, 0, x, region=2, steps=4, perturbation="zeros",
      ...                    score="logit").tolist()  # 4 regions of 2 positions × 3 channels
      [[12.0, 9.0, 6.0, 3.0, 0.0]]
      >>> perturbation_curve(apply_fn, w, x[:, :, 0], 0, x[:, :, 0], region=1, steps=4,
      ...                    perturbation="zeros", score="logit").tolist()  # 8 features
      [[4.0, 3.0, 2.0, 1.0, 0.0]]
    """
    x, relevance, region, n = _images_and_regions(x, relevance, region)
    counts = _curve_counts(x, region, n, steps)
    scores, _ = _run(
        apply_fn, params, x, target, relevance, counts, region=region, order=order, perturbation=perturbation,
        score=score, key=key, chunk_size=chunk_size, low=low, high=high, blur_sigma=blur_sigma, shard=shard,
        devices=devices, progress=progress, reduce=reduce, precision=precision,
    )
    return scores


def aopc(curve: jax.Array) -> jax.Array:
    """Area over the perturbation curve, per example (Samek et al. 2017, eq. 12).

    .. math:: \\mathrm{AOPC} = \\frac{1}{L+1} \\sum_{k=0}^{L} \\big(f(x^{(0)}) - f(x^{(k)})\\big)

    (the k = 0 term is 0; Amorim et al. eq. 4 writes the sum from k = 1 with the same
    ``1/(L+1)``). Average the result over images for the paper's ⟨·⟩.

    Args:
      curve: ``(batch, L + 1)`` from :func:`perturbation_curve`.

    Returns:
      ``(batch,)``.
    """
    curve = jnp.asarray(curve)
    if curve.ndim != 2 or curve.shape[1] < 1:
        raise ValueError(f"curve must have shape (batch, steps + 1) with steps + 1 ≥ 1; got {curve.shape}.")
    return jnp.mean(curve[:, :1] - curve, axis=1)


def confidence_drop(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    target: jax.Array | None,
    relevance: jax.Array,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    region: int | Sequence[int] = 1,
    order: str = "morf",
    perturbation: str | PerturbationFn | jax.typing.ArrayLike = "uniform",
    score: str = "probability",
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
    blur_sigma: float = 1.0,
    shard: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    reduce: str = "sum",
    precision: str | None = None,
) -> jax.Array:
    """Confidence drop ``f(x) − f(x^{(c)})`` after perturbing a fraction of the regions
    (Amorim et al. 2020, eq. 3), ``c = ⌈fraction · n⌉`` regions in ``order`` (MoRF by
    default; ``"random"`` gives the baseline).

    The defaults are the paper's: single pixels (``region=1``) replaced by uniform random
    values, fractions 5, 10, 20, 30, 40, 50 and 75 %. The other arguments are those of
    :func:`perturbation_curve`; ``fractions`` must lie in ``[0, 1]``.

    Returns:
      an array ``(batch, len(fractions))``, column j for ``fractions[j]`` (an array rather
      than a dict so it stays a jax value; :func:`jaxattr.evaluation.evaluate` names the
      columns ``drop_5``, ``drop_10``, ...).
    """
    x, relevance, region, n = _images_and_regions(x, relevance, region)
    counts = np.concatenate([[0], regions.fraction_counts(n, regions.check_fractions(fractions))])
    scores, _ = _run(
        apply_fn, params, x, target, relevance, counts, region=region, order=order, perturbation=perturbation,
        score=score, key=key, chunk_size=chunk_size, low=low, high=high, blur_sigma=blur_sigma, shard=shard,
        devices=devices, progress=progress, reduce=reduce, precision=precision,
    )
    return scores[:, :1] - scores[:, 1:]


def perturbed_inputs(
    x: jax.Array,
    relevance: jax.Array,
    *,
    region: int | Sequence[int] = 4,
    steps: int = 16,
    order: str = "morf",
    perturbation: str | PerturbationFn | jax.typing.ArrayLike = "uniform",
    key: jax.Array | None = None,
    low: float = 0.0,
    high: float = 1.0,
    blur_sigma: float = 1.0,
    reduce: str = "sum",
) -> jax.Array:
    """The inputs :func:`perturbation_curve` feeds to the model, ``(batch, L + 1, *x.shape[1:])``
    (same arguments, same key derivation). Meant for figures and checks; it materialises
    all ``batch·(L+1)`` inputs."""
    x, relevance, region, n = _images_and_regions(x, relevance, region)
    counts = jnp.asarray(_curve_counts(x, region, n, steps))
    ranking = _Ranking(
        region, regions.check_order(order), resolve_perturbation(perturbation, low=low, high=high, blur_sigma=blur_sigma),
        regions.check_reduce(reduce),
    )
    _check_perturbation(ranking.perturbation, x)
    return _inputs(x, relevance, image_keys(resolve_key(key), x.shape[0]), counts, ranking)
