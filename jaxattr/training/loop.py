"""Training with per-group L2 decay and early stopping, one configuration or a grid.

Protocol of Amorim et al., "Interpretability vs. Complexity: The Friction in Deep
Neural Networks" (IJCNN 2020, §III-A): softmax cross-entropy, L2 weight decay on one
layer group (coupled, Keras ``l2(λ)``: loss + λ Σ w² over the group's kernels),
early stopping after ``patience = 10`` epochs without improvement of the validation
loss, restoring the best weights.

Not in the paper, chosen here: Adam with learning rate 1e-3, batch size 64, the
training set reshuffled every epoch, a partial last batch used like Keras does
(its loss is the mean over the examples it holds).

:func:`train_grid` trains many ``(decay, group)`` configurations as one program:
parameters are stacked on a leading configuration axis and one epoch is
``jax.vmap`` of the single-configuration epoch, each configuration with its own
decays (its group mask as 0/1 times λ, per layer), optimiser state and early
stopping; a stopped configuration is frozen. All configurations start from the
same initial parameters and see the same batches in the same order (common random
numbers: differences between configurations come from the decay alone), so
configuration ``i`` of a grid equals :func:`train` with ``configs[i]`` and the same
seed. With several devices the configuration axis is sharded over them
(:func:`jax.shard_map`). On CPU, where that program is slower than training the
configurations one after another, ``train_grid`` does the latter by default
(``strategy``).

The data is put on the device once. On CPU the host loop makes one jitted call per
training batch; on accelerators an epoch's batches run as one compiled loop (see
:mod:`jaxattr.training._steps` for why CPU differs); then one call per validation chunk
and one to close the epoch. Shuffling is numpy's; a tqdm bar shows the epochs.

``precision`` (:mod:`jaxattr.precision`): ``"float32"`` (default, exact: XLA's
``HIGHEST``; on CPU the same numbers as XLA's default), ``"fast"`` (the backend's
default, TF32 on recent NVIDIA GPUs) or ``"bfloat16"`` (bfloat16 compute with float32
master weights, optimiser state and loss); ``None`` = the active
``jax.default_matmul_precision`` if set, else ``"float32"``.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxattr.training._checks import check_examples, check_positive_int
from jaxattr.training.checkpoint import save_checkpoint
from jaxattr.training.configs import Config
from jaxattr import precision as _precision
from jaxattr.training._steps import Carry, epoch_loop, make_steps, over_configs, train_epoch
from jaxattr.training.early_stopping import early_stopping_init
from jaxattr.training.groups import (
    NOT_DECAYED,
    group_mask,
    in_group,
    layer_labels,
)
from jaxattr.training.history import TrainHistory
from jaxattr.training.l2 import grouped_adam_l2
from jaxattr.xla import backward_options

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_PATIENCE",
    "evaluate",
    "init_params",
    "train",
    "train_grid",
]

PyTree = Any

DEFAULT_LEARNING_RATE = 1e-3  # Adam; not given in the paper
DEFAULT_BATCH_SIZE = 64  # not given in the paper
DEFAULT_PATIENCE = 10  # the paper's
DEFAULT_EVAL_BATCH_SIZE = 512

Chunk = tuple[Any, Any, Any]  # (x, y, w): inputs, labels, 0/1 weights


class _Data(NamedTuple):
    x_train: Any
    y_train: Any
    val_chunks: list[Chunk]  # zero-padded to equal size, weight 0 on padding


def _apply_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a flax.linen Module, got {type(model).__name__}"
        )
    return lambda params, x: model.apply({"params": params}, x)


def _chunks(x: Any, y: Any, chunk: int) -> list[Chunk]:
    """(x, y) as host chunks of ``chunk`` examples, the last zero-padded, with 0/1
    weights (so every chunk has one shape and compiles once)."""
    x, y = np.asarray(x), np.asarray(y, np.int32)
    n = x.shape[0]
    chunk = min(chunk, n)
    out = []
    for start in range(0, n, chunk):
        xc, yc = x[start:start + chunk], y[start:start + chunk]
        pad = chunk - len(xc)
        w = np.concatenate([np.ones(len(xc), np.float32), np.zeros(pad, np.float32)])
        xc = np.concatenate([xc, np.zeros((pad, *x.shape[1:]), x.dtype)])
        yc = np.concatenate([yc, np.zeros(pad, np.int32)])
        out.append((xc, yc, w))
    return out


def _batches(seed: int, epoch: int, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A shuffled epoch as (steps, batch) indices and 0/1 weights (last batch padded).

    Shuffled on the host with numpy (deterministic in ``(seed, epoch)``, nothing to
    compile); all configurations of a grid share it.
    """
    batch_size = min(batch_size, n)
    steps = math.ceil(n / batch_size)
    pad = steps * batch_size - n
    perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
    idx = np.concatenate([perm, np.zeros(pad, np.int32)])
    weights = (np.arange(steps * batch_size) < n).astype(np.float32)
    return idx.reshape(steps, batch_size), weights.reshape(steps, batch_size)


class _Compiled(NamedTuple):
    train_step: Callable[..., Carry]
    eval_chunk: Callable[..., Carry]
    end_epoch: Callable[..., tuple[Carry, dict[str, jax.Array]]]
    opt_init: Callable[[PyTree], PyTree]
    train_epoch: Callable[..., Carry] | None = None  # the epoch as one compiled loop


@functools.lru_cache(maxsize=16)
def _compile(model, label_leaves, label_treedef, static_args, grid, mesh, loop="host") -> _Compiled:
    labels = jax.tree_util.tree_unflatten(label_treedef, label_leaves)
    static = dict(static_args)
    steps = make_steps(_apply_fn(model), labels, **static)
    fns = [steps.train_step, steps.eval_chunk, steps.end_epoch]
    if grid:  # configuration axis 0 for the carry and the decays, data shared
        axes = [(0, 0, None, None, None, None, None), (0, None, None, None), (0, 0, None, None)]
        fns = [over_configs(fn, a, mesh) for fn, a in zip(fns, axes)]
    # The optimiser state does not depend on the decay values.
    zero = {label: 0.0 for label in set(label_leaves) - {NOT_DECAYED}}
    tx = grouped_adam_l2(static["learning_rate"], zero, labels, coupled=static["coupled"])
    # The train step has a backward pass: multi-threaded convolutions on CPU (see jaxattr.xla).
    options = [backward_options(), {}, {}]
    epoch = (jax.jit(train_epoch(fns[0]), donate_argnums=0, compiler_options=options[0])
             if loop == "compiled" else None)
    return _Compiled(*(jax.jit(fn, donate_argnums=0, compiler_options=o) for fn, o in zip(fns, options)),
                     jax.jit(tx.init), epoch)


def _compiled(
    model: nn.Module, labels: PyTree, grid: bool, mesh: Mesh | None, **static: Any
) -> _Compiled:
    """The jitted (for a grid vmapped) epoch pieces and optimiser init, cached per
    model and settings so that repeated calls (folds, benchmarks) compile once."""
    leaves, treedef = jax.tree_util.tree_flatten(labels)
    key = (model, tuple(leaves), treedef, tuple(sorted(static.items())), grid, mesh, epoch_loop())
    try:
        hash(key)
    except TypeError:  # a module with unhashable attributes: no caching
        return _compile.__wrapped__(*key)
    return _compile(*key)


@functools.lru_cache(maxsize=16)
def _jitted_init(model: nn.Module) -> Callable[..., PyTree]:
    return jax.jit(lambda key, x: model.init(key, x)["params"])


def init_params(model: nn.Module, x: Any, seed: int = 0) -> PyTree:
    """``model.init(...)["params"]`` from ``seed``, jitted and cached per model.

    Uses non-partitionable threefry (``jax.threefry_partitionable(False)``): the
    same random stream for a given seed every time, and on XLA's CPU backend it
    compiles about 3× faster than the partitionable one.
    """
    _apply_fn(model)
    key = jax.random.key(seed)
    x = jnp.asarray(x)
    with jax.threefry_partitionable(False):
        try:
            return _jitted_init(model)(key, x)
        except TypeError:  # unhashable module attributes: no caching
            return _jitted_init.__wrapped__(model)(key, x)


def _prepare(
    model: nn.Module,
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    params: PyTree | None,
    seed: int,
    eval_batch_size: int,
) -> tuple[PyTree, _Data]:
    """Validate inputs, initialise parameters and lay the data out for training."""
    apply_fn = _apply_fn(model)
    example = check_examples(x_train, y_train, "x_train", "y_train")
    val_example = check_examples(x_val, y_val, "x_val", "y_val")
    if val_example != example:
        raise ValueError(
            f"x_val examples must have the shape of x_train examples {example}, "
            f"got {val_example}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    check_positive_int(eval_batch_size, "eval_batch_size")
    y_train, y_val = np.asarray(y_train, np.int32), np.asarray(y_val, np.int32)
    if params is None:
        params = init_params(model, np.asarray(x_train[:1]), seed)
    num_classes = jax.eval_shape(apply_fn, params, x_train[:1]).shape[-1]
    for name, y in (("y_train", y_train), ("y_val", y_val)):
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{name} must hold class indices in [0, {num_classes}) (the model's "
                f"number of logits), got values in [{low}, {high}]"
            )
    data = _Data(np.asarray(x_train), y_train, _chunks(x_val, y_val, eval_batch_size))
    return params, data


def _config_decays(
    configs: Sequence[Config], params: PyTree, labels: PyTree
) -> dict[str, np.ndarray]:
    """Per-label decay of each configuration: group mask (0/1) × λ, shape (configs,)."""
    for group in sorted({c.group for c in configs}):
        group_mask(params, group)  # raises when the group selects no kernel
    present = sorted(set(jax.tree_util.tree_leaves(labels)) - {NOT_DECAYED})
    return {
        label: np.array(
            [c.decay if in_group(label, c.group) else 0.0 for c in configs],
            np.float32,
        )
        for label in present
    }


def _check_configs(configs: Any) -> list[Config]:
    if isinstance(configs, Config) or not isinstance(configs, Sequence):
        raise TypeError(
            "configs must be a sequence of Config(decay, group), got "
            f"{type(configs).__name__}"
        )
    if not configs:
        raise ValueError("configs must hold at least one Config, got none")
    out = []
    for i, c in enumerate(configs):
        if not isinstance(c, Config):
            raise TypeError(f"configs[{i}] must be a Config(decay, group), got {c!r}")
        out.append(c.validate())
    return out


def _fit(
    fns: _Compiled,
    carry: Carry,
    decays: Mapping[str, jax.Array],
    data: _Data,
    put: Callable[[Any], Any],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: bool,
    desc: str,
    keep: slice | None = None,
) -> tuple[PyTree, TrainHistory]:
    """The host loop: per epoch, one jitted call per batch, per validation chunk
    and to close the epoch, until every configuration has stopped."""
    n_train = data.x_train.shape[0]
    n_val = float(sum(np.sum(w) for _, _, w in data.val_chunks))
    x_train, y_train, val_chunks = put((data.x_train, data.y_train, data.val_chunks))
    per_epoch: list[dict[str, np.ndarray]] = []
    with tqdm(range(epochs), desc=desc, disable=not progress, leave=False) as bar:
        for e in bar:
            idx, w = put(_batches(seed, e, n_train, batch_size))
            if fns.train_epoch is not None:  # accelerators: the epoch is one program
                carry = fns.train_epoch(carry, decays, x_train, y_train, idx, w)
            else:
                for step in range(idx.shape[0]):
                    carry = fns.train_step(carry, decays, x_train, y_train, idx, w, step)
            for xc, yc, wc in val_chunks:
                carry = fns.eval_chunk(carry, xc, yc, wc)
            carry, metrics = fns.end_epoch(carry, decays, float(n_train), n_val)
            metrics, stopped = jax.device_get((metrics, carry.stopping.stopped))
            per_epoch.append(metrics)
            losses = np.asarray(metrics["val_loss"])
            losses = losses[np.isfinite(losses)]
            bar.set_postfix(
                best_val_loss=f"{losses.min():.4f}" if losses.size else "nan",
                active=int(np.size(stopped) - np.sum(stopped)),
            )
            if np.all(stopped):
                break
    stopping = jax.device_get(carry.stopping)
    kept = (lambda a: np.asarray(a)) if keep is None else (lambda a: np.asarray(a)[keep])
    history = TrainHistory(
        train_loss=kept(np.stack([m["train_loss"] for m in per_epoch], axis=-1)),
        val_loss=kept(np.stack([m["val_loss"] for m in per_epoch], axis=-1)),
        val_accuracy=kept(np.stack([m["val_accuracy"] for m in per_epoch], axis=-1)),
        best_epoch=kept(stopping.best_epoch),
        best_val_loss=kept(stopping.best_loss),
        epochs_trained=kept(stopping.epoch),
    )
    best = carry.best_params
    if keep is not None:
        best = jax.tree.map(lambda a: a[keep], best)
    return best, history


def _initial_carry(
    params: PyTree, opt_init: Callable[[PyTree], PyTree], copies: int | None
) -> Carry:
    """The carry before the first epoch as fresh host arrays (``copies`` stacked).

    Fresh buffers matter: the jitted steps donate their carry, which must never
    alias the caller's ``params``.
    """
    one = jax.device_get(
        Carry(
            params=params,
            opt_state=opt_init(params),
            best_params=params,
            stopping=early_stopping_init(),
            train_loss=np.float32(0.0),
            val_sums=np.zeros(2, np.float32),
        )
    )
    if copies is None:
        return jax.tree.map(np.array, one)
    return jax.tree.map(lambda a: np.repeat(np.asarray(a)[None], copies, axis=0), one)


def _check_common(epochs: int, batch_size: int, patience: int) -> None:
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(patience, "patience")


def train(
    model: nn.Module,
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    decay: float = 0.0,
    group: str = "A",
    epochs: int = 100,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    patience: int = DEFAULT_PATIENCE,
    seed: int = 0,
    coupled: bool = True,
    params: PyTree | None = None,
    eval_batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    precision: str | None = None,
) -> tuple[PyTree, TrainHistory]:
    """Train one configuration with L2 ``decay`` on ``group`` and early stopping.

    Minimises softmax cross-entropy with Adam; ``coupled=True`` adds
    ``decay · Σ w²`` over the group's kernels to the loss (Keras ``l2``, the
    paper's), ``coupled=False`` uses AdamW's decoupled decay (see
    :mod:`jaxattr.training.l2`). After each epoch the validation loss is measured;
    training stops after ``patience`` epochs without improvement (or after
    ``epochs``) and the parameters of the best epoch are returned.

    Args:
      model: a Flax Linen module mapping ``x`` to logits, with no mutable state
        (no batch norm statistics, no dropout rng).
      x_train, y_train: training inputs (floating, ``(n, ...)``) and integer labels
        ``(n,)``.
      x_val, y_val: validation data for early stopping.
      decay: λ ≥ 0.
      group: layer group, one of :data:`jaxattr.training.groups.GROUPS`.
      epochs: maximum number of epochs.
      batch_size: training batch size (default 64; not in the paper).
      learning_rate: Adam's (default 1e-3; not in the paper).
      patience: early-stopping patience (the paper: 10).
      seed: initialises the parameters (unless ``params`` is given) and shuffles.
      coupled: Keras-style L2 (True) or AdamW-style decay (False).
      params: initial parameters instead of ``model.init``.
      eval_batch_size: examples per validation chunk.
      progress: show a tqdm bar over epochs.
      checkpoint_dir: if given, the best parameters and the history are saved
        there with orbax (see :func:`jaxattr.training.checkpoint.save_checkpoint`).
      precision: ``"float32"`` (default), ``"fast"`` or ``"bfloat16"`` (bfloat16
        compute, float32 master weights); see the module docstring.

    Returns:
      ``(best_params, history)``.

    Examples:
      >>> from jaxattr.data import load_digits
      >>> from jaxattr.models import small_paper_cnn
      >>> x, y = load_digits()
      >>> params, history = train(small_paper_cnn(), x[:1500], y[:1500],
      ...     x[1500:], y[1500:], decay=1e-3, group="D", epochs=2, progress=False)
      >>> history.val_loss.shape
      (2,)
    """
    config = Config(decay, group).validate()
    return _run(
        model, [config], x_train, y_train, x_val, y_val, grid=False, shard=False,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience=patience, seed=seed, coupled=coupled, params=params,
        eval_batch_size=eval_batch_size, progress=progress,
        checkpoint_dir=checkpoint_dir, precision=precision,
    )


def _config_mesh(n_configs: int, shard: bool | None) -> tuple[Mesh | None, int]:
    """A 1-D mesh over this process's devices on the configuration axis and the padded grid
    size (in a multi-process run each process trains its own grid: ``jax.local_devices()``,
    which is ``jax.devices()`` in a single process)."""
    devices = jax.local_devices()
    if shard is None:
        shard = len(devices) > 1
    if not shard or len(devices) == 1:
        return None, n_configs
    padded = math.ceil(n_configs / len(devices)) * len(devices)
    return Mesh(np.array(devices), ("config",)), padded


def train_grid(
    model: nn.Module,
    configs: Sequence[Config],
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    epochs: int = 100,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    patience: int = DEFAULT_PATIENCE,
    seed: int = 0,
    coupled: bool = True,
    params: PyTree | None = None,
    eval_batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    shard: bool | None = None,
    strategy: str = "auto",
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    precision: str | None = None,
) -> tuple[PyTree, TrainHistory]:
    """Train every configuration of ``configs``, by default as one vmapped program.

    Configuration ``i`` is trained exactly as ``train(model, ..., decay=configs[i]
    .decay, group=configs[i].group)`` with the same seed would be (same initial
    parameters, same batches), up to floating-point rounding of the batched
    kernels. Each configuration has its own early stopping; a stopped
    configuration is frozen (its parameters stop changing) and the loop ends when
    all have stopped or after ``epochs``.

    ``strategy="vmap"`` is the program described above. ``"sequential"`` trains
    the configurations one after another with :func:`train` (one compilation for
    all) and stacks the results the same way. ``"auto"`` (default) takes
    ``"sequential"`` on CPU and ``"vmap"`` elsewhere, because on XLA's CPU backend
    the vmapped grid is slower than the sequential one: a vmapped convolution with
    per-configuration kernels lowers to a grouped convolution that XLA:CPU runs
    slowly, and a 2-core CPU has no idle capacity for a bigger batch to fill
    (``benchmarks/training.py``: paper CNN on digits, 41 configurations, 0.86× the
    sequential throughput). On accelerators the vmapped batch is the fast path.

    Args:
      configs: e.g. :func:`jaxattr.training.configs.paper_configs` (41 configs).
      shard: shard the configuration axis over ``jax.local_devices()`` (padding the grid
        to a multiple of the device count); default: when there are several.
        Only for ``strategy="vmap"``.
      strategy: ``"vmap"``, ``"sequential"`` or ``"auto"`` (see above).
      precision: as in :func:`train`.
      Other arguments: as :func:`train`.

    Returns:
      ``(best_params, history)``: parameters stacked on a leading axis of
      ``len(configs)``, and a :class:`TrainHistory` whose fields have that leading
      axis too.
    """
    configs = _check_configs(configs)
    strategy = grid_strategy(strategy)
    common = dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience=patience, seed=seed, coupled=coupled, params=params,
        eval_batch_size=eval_batch_size, progress=progress, precision=precision,
    )
    if strategy == "vmap":
        return _run(
            model, configs, x_train, y_train, x_val, y_val, grid=True, shard=shard,
            checkpoint_dir=checkpoint_dir, **common,
        )
    runs = [
        _run(
            model, [config], x_train, y_train, x_val, y_val, grid=False, shard=False,
            checkpoint_dir=None, **common,
        )
        for config in configs
    ]
    best = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[r[0] for r in runs])
    history = _stack_histories([r[1] for r in runs])
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, best, history)
    return best, history


def grid_strategy(strategy: str = "auto") -> str:
    """``"vmap"`` or ``"sequential"``: ``"auto"`` resolved for the default backend (see
    :func:`train_grid`); anything else is a ``ValueError``."""
    if strategy == "auto":
        strategy = "sequential" if jax.default_backend() == "cpu" else "vmap"
    if strategy not in ("vmap", "sequential"):
        raise ValueError(
            f"strategy must be 'vmap', 'sequential' or 'auto', got {strategy!r}"
        )
    return strategy


def _stack_histories(histories: Sequence[TrainHistory]) -> TrainHistory:
    """Stack single-configuration histories, NaN after each one's last epoch."""
    longest = max(len(h.val_loss) for h in histories)

    def per_epoch(field: str) -> np.ndarray:
        rows = [getattr(h, field) for h in histories]
        return np.stack([np.pad(r, (0, longest - len(r)), constant_values=np.nan) for r in rows])

    return TrainHistory(
        train_loss=per_epoch("train_loss"),
        val_loss=per_epoch("val_loss"),
        val_accuracy=per_epoch("val_accuracy"),
        best_epoch=np.stack([h.best_epoch for h in histories]),
        best_val_loss=np.stack([h.best_val_loss for h in histories]),
        epochs_trained=np.stack([h.epochs_trained for h in histories]),
    )


def _run(
    model: nn.Module,
    configs: list[Config],
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    grid: bool,
    shard: bool | None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    seed: int,
    coupled: bool,
    params: PyTree | None,
    eval_batch_size: int,
    progress: bool,
    checkpoint_dir: str | os.PathLike | None,
    precision: str | None = None,
) -> tuple[PyTree, TrainHistory]:
    """Shared body of :func:`train` (``grid=False``) and :func:`train_grid`."""
    _check_common(epochs, batch_size, patience)
    precision = _precision.resolve(precision)
    params, data = _prepare(
        model, x_train, y_train, x_val, y_val,
        params=params, seed=seed, eval_batch_size=eval_batch_size,
    )
    labels = layer_labels(params)
    mesh, padded = _config_mesh(len(configs), shard) if grid else (None, None)
    fns = _compiled(
        model, labels, grid, mesh, learning_rate=learning_rate, patience=patience,
        coupled=coupled, precision=precision,
    )
    run = configs + [configs[-1]] * ((padded or 1) - len(configs))
    decays = _config_decays(run, params, labels)
    if not grid:
        decays = {label: d[0] for label, d in decays.items()}
    carry = _initial_carry(params, fns.opt_init, padded)
    if mesh is None:
        put = jax.device_put
        carry, decays = put((carry, decays))
    else:
        carry, decays = jax.device_put(
            (carry, decays), NamedSharding(mesh, PartitionSpec("config"))
        )
        replicated = NamedSharding(mesh, PartitionSpec())
        put = lambda tree: jax.device_put(tree, replicated)  # noqa: E731
    best, history = _fit(
        fns, carry, decays, data, put, epochs=epochs, batch_size=batch_size,
        seed=seed, progress=progress,
        desc=f"train {len(configs)} configs" if grid else f"train {configs[0]}",
        keep=slice(0, len(configs)) if grid else None,
    )
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, best, history)
    return best, history


def evaluate(
    model: nn.Module,
    params: PyTree,
    x: Any,
    y: Any,
    *,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy of ``model`` with ``params`` on (x, y).

    Evaluated in chunks of ``batch_size`` examples.
    """
    _apply_fn(model)
    check_examples(x, y, "x", "y")
    check_positive_int(batch_size, "batch_size")
    sums = np.zeros(2)
    for chunk in _chunks(x, y, batch_size):
        sums += np.asarray(_eval_sums(model, params, *chunk))
    n = len(y)
    return float(sums[0] / n), float(sums[1] / n)


@functools.partial(jax.jit, static_argnums=0)
def _eval_sums(model: nn.Module, params: PyTree, x, y, w) -> jax.Array:
    logits = _apply_fn(model)(params, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
    return jnp.stack([jnp.sum(w * ce), jnp.sum(w * correct)])
