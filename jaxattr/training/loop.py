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
(:func:`jax.shard_map`). On CPU the configurations run one after another inside
the program by default (``vmap_size``), because XLA's CPU backend turns vmapped
convolutions into slow grouped convolutions.

The host loop calls one jitted function per epoch (training scan, validation,
early stopping) and shows a tqdm bar; shuffling happens on the host with numpy.
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
from jaxattr.training.early_stopping import (
    EarlyStoppingState,
    early_stopping_init,
    early_stopping_update,
)
from jaxattr.training.groups import (
    NOT_DECAYED,
    group_mask,
    in_group,
    layer_labels,
)
from jaxattr.training.history import TrainHistory
from jaxattr.training.l2 import grouped_adam_l2, grouped_l2_penalty

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
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

DEFAULT_LEARNING_RATE = 1e-3  # Adam; not given in the paper
DEFAULT_BATCH_SIZE = 64  # not given in the paper
DEFAULT_PATIENCE = 10  # the paper's
DEFAULT_EVAL_BATCH_SIZE = 512


class _Carry(NamedTuple):
    params: PyTree
    opt_state: PyTree
    best_params: PyTree
    stopping: EarlyStoppingState


class _Data(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array  # (chunks, chunk, ...) zero-padded
    y_val: jax.Array  # (chunks, chunk)
    w_val: jax.Array  # (chunks, chunk) 1 for real examples, 0 for padding


def _apply_fn(model: nn.Module) -> ApplyFn:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a flax.linen Module, got {type(model).__name__}"
        )
    return lambda params, x: model.apply({"params": params}, x)


def _chunked(x: Any, y: Any, chunk: int) -> tuple[np.ndarray, ...]:
    """Pad (x, y) to whole chunks of ``chunk`` examples and add 0/1 weights (host)."""
    x, y = np.asarray(x), np.asarray(y, np.int32)
    n = x.shape[0]
    chunk = min(chunk, n)
    chunks = math.ceil(n / chunk)
    pad = chunks * chunk - n
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros(pad, np.int32)])
    return (
        x.reshape(chunks, chunk, *x.shape[1:]),
        y.reshape(chunks, chunk),
        w.reshape(chunks, chunk),
    )


def _evaluate_chunks(
    apply_fn: ApplyFn, params: PyTree, x: jax.Array, y: jax.Array, w: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy over weighted chunks, one chunk at a time."""

    def chunk_sums(args):
        xb, yb, wb = args
        logits = apply_fn(params, xb)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        correct = (jnp.argmax(logits, -1) == yb).astype(jnp.float32)
        return jnp.sum(wb * ce), jnp.sum(wb * correct)

    ce, correct = jax.lax.map(chunk_sums, (x, y, w))
    n = jnp.sum(w)
    return jnp.sum(ce) / n, jnp.sum(correct) / n


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


def _make_epoch(
    apply_fn: ApplyFn,
    labels: PyTree,
    *,
    learning_rate: float,
    patience: int,
    coupled: bool,
) -> Callable[..., tuple[_Carry, dict[str, jax.Array]]]:
    """One epoch of one configuration: train, validate, early-stopping update.

    The returned function is pure and per-configuration; :func:`train_grid` vmaps
    it over stacked carries and decays (data and batches are shared).
    """

    def epoch(carry: _Carry, decays: Mapping[str, jax.Array], data: _Data, batches):
        tx = grouped_adam_l2(learning_rate, decays, labels, coupled=coupled)
        idx, w = batches

        def step(state, batch):
            params, opt_state = state
            bidx, bw = batch

            def loss_fn(p):
                logits = apply_fn(p, data.x_train[bidx])
                ce = optax.softmax_cross_entropy_with_integer_labels(
                    logits, data.y_train[bidx]
                )
                return jnp.sum(bw * ce) / jnp.sum(bw)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss * jnp.sum(bw)

        (params, opt_state), losses = jax.lax.scan(
            step, (carry.params, carry.opt_state), (idx, w)
        )
        val_ce, val_acc = _evaluate_chunks(
            apply_fn, params, data.x_val, data.y_val, data.w_val
        )
        val_loss = val_ce + grouped_l2_penalty(params, decays, labels) if coupled else val_ce
        stopping, improved = early_stopping_update(
            carry.stopping, val_loss, patience=patience
        )
        best = jax.tree.map(
            lambda new, old: jnp.where(improved, new, old), params, carry.best_params
        )
        metrics = {
            "train_loss": jnp.sum(losses) / jnp.sum(w),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        return _Carry(params, opt_state, best, stopping), metrics

    def frozen(carry: _Carry, decays, data, batches):
        nan = carry.stopping.best_loss + jnp.nan  # shaped and typed like a loss
        return carry, {"train_loss": nan, "val_loss": nan, "val_accuracy": nan}

    def epoch_or_frozen(carry: _Carry, decays, data, batches):
        # A stopped configuration is skipped (under vmap: both run, one is kept).
        return jax.lax.cond(
            carry.stopping.stopped, frozen, epoch, carry, decays, data, batches
        )

    return epoch_or_frozen


def _over_configs(
    epoch: Callable[..., tuple[_Carry, dict[str, jax.Array]]],
    vmap_size: int | None,
    mesh: Mesh | None,
) -> Callable[..., tuple[_Carry, dict[str, jax.Array]]]:
    """Map the per-configuration epoch over the leading configuration axis.

    ``vmap_size=None`` vmaps all configurations (of each device) together;
    ``vmap_size=k`` vmaps chunks of ``k`` and runs the chunks one after the other
    in the same program (:func:`jax.lax.map` with ``batch_size=k``). With a mesh,
    each device maps its own slice of configurations (:func:`jax.shard_map`).
    """

    def local(carry, decays, data, batches):
        if vmap_size is None:
            return jax.vmap(epoch, in_axes=(0, 0, None, None))(carry, decays, data, batches)
        return jax.lax.map(
            lambda cd: epoch(cd[0], cd[1], data, batches), (carry, decays),
            batch_size=vmap_size,
        )

    if mesh is None:
        return local
    by_config, replicated = PartitionSpec("config"), PartitionSpec()
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(by_config, by_config, replicated, replicated),
        out_specs=by_config,
        check_vma=False,  # purely per-device work, no collectives to check
    )


class _Compiled(NamedTuple):
    epoch: Callable[..., tuple[_Carry, dict[str, jax.Array]]]
    opt_init: Callable[[PyTree], PyTree]


@functools.lru_cache(maxsize=16)
def _compile(model, label_leaves, label_treedef, static_args, grid) -> _Compiled:
    labels = jax.tree_util.tree_unflatten(label_treedef, label_leaves)
    static = dict(static_args)
    epoch = _make_epoch(
        _apply_fn(model), labels, learning_rate=static["learning_rate"],
        patience=static["patience"], coupled=static["coupled"],
    )
    if grid:
        epoch = _over_configs(epoch, static["vmap_size"], static["mesh"])
    # The optimiser state does not depend on the decay values.
    zero = {label: 0.0 for label in set(label_leaves) - {NOT_DECAYED}}
    tx = grouped_adam_l2(static["learning_rate"], zero, labels, coupled=static["coupled"])
    return _Compiled(jax.jit(epoch, donate_argnums=0), jax.jit(tx.init))


def _compiled(model: nn.Module, labels: PyTree, grid: bool, **static: Any) -> _Compiled:
    """The jitted (for a grid mapped over configurations) epoch and optimiser
    init, cached per model and settings so that repeated calls (folds,
    benchmarks) compile once."""
    leaves, treedef = jax.tree_util.tree_flatten(labels)
    key = (model, tuple(leaves), treedef, tuple(sorted(static.items(), key=str)), grid)
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
) -> tuple[ApplyFn, PyTree, _Data]:
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
    data = _Data(np.asarray(x_train), y_train, *_chunked(x_val, y_val, eval_batch_size))
    return apply_fn, params, data


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
    epoch_fn: Callable[..., tuple[_Carry, dict[str, jax.Array]]],
    carry: _Carry,
    decays: Mapping[str, jax.Array],
    data: _Data,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: bool,
    desc: str,
    keep: slice | None = None,
) -> tuple[PyTree, TrainHistory]:
    """The host loop: one jitted epoch per iteration until all have stopped."""
    per_epoch: list[dict[str, np.ndarray]] = []
    with tqdm(range(epochs), desc=desc, disable=not progress, leave=False) as bar:
        for e in bar:
            batches = _batches(seed, e, data.x_train.shape[0], batch_size)
            carry, metrics = epoch_fn(carry, decays, data, batches)
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
    best = carry.best_params if keep is None else jax.tree.map(lambda a: a[keep], carry.best_params)
    return best, history


def _initial_carry(
    params: PyTree, opt_init: Callable[[PyTree], PyTree], copies: int | None
) -> _Carry:
    """The carry before the first epoch as fresh host arrays (``copies`` stacked).

    Fresh buffers matter: the jitted epoch donates its carry, which must never
    alias the caller's ``params``.
    """
    one = jax.device_get(
        _Carry(params, opt_init(params), params, early_stopping_init())
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
        vmap_size=None, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience=patience, seed=seed, coupled=coupled, params=params,
        eval_batch_size=eval_batch_size, progress=progress,
        checkpoint_dir=checkpoint_dir,
    )


def _resolve_vmap_size(vmap_size: int | str | None) -> int | None:
    if vmap_size == "auto":
        return 1 if jax.default_backend() == "cpu" else None
    if vmap_size is None:
        return None
    return check_positive_int(vmap_size, "vmap_size")


def _config_mesh(n_configs: int, shard: bool | None) -> tuple[Mesh | None, int]:
    """A 1-D device mesh over the configuration axis and the padded grid size."""
    devices = jax.devices()
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
    vmap_size: int | str | None = "auto",
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
) -> tuple[PyTree, TrainHistory]:
    """Train every configuration of ``configs`` at once, as one vmapped program.

    Configuration ``i`` is trained exactly as ``train(model, ..., decay=configs[i]
    .decay, group=configs[i].group)`` with the same seed would be (same initial
    parameters, same batches), up to floating-point rounding of the batched
    kernels. Each configuration has its own early stopping; a stopped
    configuration is frozen (its parameters stop changing) and the loop ends when
    all have stopped or after ``epochs``.

    Args:
      configs: e.g. :func:`jaxattr.training.configs.paper_configs` (41 configs).
      shard: shard the configuration axis over ``jax.devices()`` (padding the grid
        to a multiple of the device count); default: when there are several.
      vmap_size: how many configurations one vmapped computation trains together;
        ``None``: all of them (of each device); ``k``: chunks of ``k`` vmapped, the
        chunks run one after another inside the same program
        (``jax.lax.map(..., batch_size=k)``), and there a stopped configuration
        costs nothing. ``"auto"``: 1 on CPU, ``None`` elsewhere. Why: on XLA's CPU
        backend a vmapped convolution with per-configuration kernels lowers to a
        grouped convolution that is several times slower than the separate
        convolutions (see ``benchmarks/training.py``); on accelerators vmapping
        everything is the fast path.
      Other arguments: as :func:`train`.

    Returns:
      ``(best_params, history)``: parameters stacked on a leading axis of
      ``len(configs)``, and a :class:`TrainHistory` whose fields have that leading
      axis too.
    """
    return _run(
        model, _check_configs(configs), x_train, y_train, x_val, y_val, grid=True,
        shard=shard, vmap_size=vmap_size, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, seed=seed, coupled=coupled,
        params=params, eval_batch_size=eval_batch_size, progress=progress,
        checkpoint_dir=checkpoint_dir,
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
    vmap_size: int | str | None,
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
) -> tuple[PyTree, TrainHistory]:
    """Shared body of :func:`train` (``grid=False``) and :func:`train_grid`."""
    _check_common(epochs, batch_size, patience)
    _, params, data = _prepare(
        model, x_train, y_train, x_val, y_val,
        params=params, seed=seed, eval_batch_size=eval_batch_size,
    )
    labels = layer_labels(params)
    mesh, padded = _config_mesh(len(configs), shard) if grid else (None, None)
    fns = _compiled(
        model, labels, grid, learning_rate=learning_rate, patience=patience,
        coupled=coupled, vmap_size=_resolve_vmap_size(vmap_size) if grid else None,
        mesh=mesh,
    )
    run = configs + [configs[-1]] * ((padded or 1) - len(configs))
    decays = _config_decays(run, params, labels)
    if not grid:
        decays = {label: d[0] for label, d in decays.items()}
    carry = _initial_carry(params, fns.opt_init, padded)
    if mesh is None:
        carry, decays, data = jax.device_put((carry, decays, data))
    else:
        by_config = NamedSharding(mesh, PartitionSpec("config"))
        carry, decays = jax.device_put((carry, decays), by_config)
        data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
    best, history = _fit(
        fns.epoch, carry, decays, data, epochs=epochs, batch_size=batch_size,
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
    """Mean softmax cross-entropy and accuracy of ``model`` with ``params`` on (x, y)."""
    _apply_fn(model)
    check_examples(x, y, "x", "y")
    check_positive_int(batch_size, "batch_size")
    chunks = _chunked(jnp.asarray(x), jnp.asarray(y, jnp.int32), batch_size)
    loss, accuracy = _evaluate_jit(model, params, *chunks)
    return float(loss), float(accuracy)


@functools.partial(jax.jit, static_argnums=0)
def _evaluate_jit(model, params, x, y, w):
    return _evaluate_chunks(_apply_fn(model), params, x, y, w)
