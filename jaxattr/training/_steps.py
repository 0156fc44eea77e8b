"""The pure per-configuration pieces of an epoch, and how a grid maps them (private).

An epoch's training batches run either from the host (one jitted call per batch) or
as one compiled loop (``lax.fori_loop`` over the batches, :func:`train_epoch`), chosen
per backend by :func:`epoch_loop`: on XLA's CPU backend the convolutions of a
``while`` loop body run about 2.4× slower than the same step compiled on its own
(paper CNN, digits, batch 64) and a dispatch per batch costs well under a
millisecond, so CPU keeps the host loop; on accelerators, where a dispatch per small
step costs more than the step, the epoch is one program. Both give the same
parameters (the same steps in the same order). Validation runs one call per chunk and
one closes the epoch.

Precision (:mod:`jaxattr.precision`): every function is traced under the setting's
``jax.default_matmul_precision``; ``"bfloat16"`` also runs the model on bfloat16
copies of the parameters and inputs (float32 master weights, loss and optimiser).

Every function here works on one configuration; :func:`over_configs` vmaps it over
the leading configuration axis of a grid (and shards that axis over devices).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from jaxattr import precision as _precision
from jaxattr.training.early_stopping import EarlyStoppingState, early_stopping_update
from jaxattr.training.l2 import grouped_adam_l2, grouped_l2_penalty

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
Decays = Mapping[str, jax.Array]


class Carry(NamedTuple):
    """Everything one configuration carries from epoch to epoch."""

    params: PyTree
    opt_state: PyTree
    best_params: PyTree
    stopping: EarlyStoppingState
    train_loss: jax.Array  # sum over the epoch's examples so far
    val_sums: jax.Array  # (2,): summed cross-entropy and correct predictions


class Steps(NamedTuple):
    """Per-configuration pure functions of one training setting."""

    train_step: Callable[..., Carry]
    eval_chunk: Callable[..., Carry]
    end_epoch: Callable[..., tuple[Carry, dict[str, jax.Array]]]


def epoch_loop(backend: str | None = None) -> str:
    """``"host"`` (one jitted call per batch) on CPU, ``"compiled"`` (the epoch's batches
    as one ``lax.fori_loop``) on other backends; ``JAXATTR_EPOCH_LOOP=host|compiled``
    overrides the choice."""
    forced = os.environ.get("JAXATTR_EPOCH_LOOP", "")
    if forced:
        if forced not in ("host", "compiled"):
            raise ValueError(f"JAXATTR_EPOCH_LOOP must be 'host' or 'compiled', got {forced!r}")
        return forced
    backend = jax.default_backend() if backend is None else backend
    return "host" if backend == "cpu" else "compiled"


def train_epoch(train_step: Callable[..., Carry]) -> Callable[..., Carry]:
    """``(carry, decays, x, y, idx, w) -> carry``: ``train_step`` over every batch of
    ``idx`` (``(steps, batch)``) in one ``lax.fori_loop``."""

    def epoch(carry: Carry, decays: Decays, x, y, idx, w) -> Carry:
        body = lambda step, c: train_step(c, decays, x, y, idx, w, step)  # noqa: E731
        return jax.lax.fori_loop(0, idx.shape[0], body, carry)

    return epoch


def _under_precision(fn: Callable, precision: str) -> Callable:
    """``fn`` traced under ``precision``'s matmul precision."""

    @functools.wraps(fn)
    def wrapped(*args):
        with jax.default_matmul_precision(_precision.matmul_precision(precision)):
            return fn(*args)

    return wrapped


def _model_fn(apply_fn: ApplyFn, precision: str) -> ApplyFn:
    """float32 logits of ``apply_fn``; with ``"bfloat16"`` computed on bfloat16 copies of the
    floating parameters and inputs (their gradients flow back to the float32 masters)."""
    if precision != "bfloat16":
        return apply_fn
    half = lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731

    def forward(params, x):
        return apply_fn(jax.tree.map(half, params), half(x)).astype(jnp.float32)

    return forward


def make_steps(
    apply_fn: ApplyFn,
    labels: PyTree,
    *,
    learning_rate: float,
    patience: int,
    coupled: bool,
    precision: str = "float32",
) -> Steps:
    """The three per-configuration functions of an epoch.

    * ``train_step(carry, decays, x, y, idx, w, step)``: one Adam step (with the
      configuration's per-label L2 decays) on batch ``idx[step]`` weighted by
      ``w[step]`` (0 for the padding of a partial last batch); a stopped
      configuration is left unchanged.
    * ``eval_chunk(carry, x, y, w)``: add one validation chunk's summed
      cross-entropy and correct predictions to ``carry.val_sums``.
    * ``end_epoch(carry, decays, n_train, n_val)``: the epoch's metrics, the
      early-stopping update and the copy of the best parameters; resets the sums.

    ``precision``: a resolved setting of :mod:`jaxattr.precision` (``"float32"``,
    ``"fast"``, ``"bfloat16"`` or a user's ``jax.default_matmul_precision`` value).
    """
    apply_fn = _model_fn(apply_fn, precision)

    def train_step(carry: Carry, decays: Decays, x, y, idx, w, step) -> Carry:
        tx = grouped_adam_l2(learning_rate, decays, labels, coupled=coupled)
        bidx, bw = idx[step], w[step]

        def loss_fn(params):
            logits = apply_fn(params, x[bidx])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y[bidx])
            return jnp.sum(bw * ce) / jnp.sum(bw)

        loss, grads = jax.value_and_grad(loss_fn)(carry.params)
        updates, opt_state = tx.update(grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        keep = carry.stopping.stopped  # a stopped configuration is frozen
        params, opt_state = jax.tree.map(
            lambda old, new: jnp.where(keep, old, new),
            (carry.params, carry.opt_state),
            (params, opt_state),
        )
        return carry._replace(
            params=params,
            opt_state=opt_state,
            train_loss=carry.train_loss + loss * jnp.sum(bw),
        )

    def eval_chunk(carry: Carry, x, y, w) -> Carry:
        logits = apply_fn(carry.params, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        sums = jnp.stack([jnp.sum(w * ce), jnp.sum(w * correct)])
        return carry._replace(val_sums=carry.val_sums + sums)

    def end_epoch(carry: Carry, decays: Decays, n_train, n_val):
        val_ce, val_acc = carry.val_sums[0] / n_val, carry.val_sums[1] / n_val
        val_loss = val_ce
        if coupled:  # Keras' val_loss includes the regularisation losses
            val_loss = val_ce + grouped_l2_penalty(carry.params, decays, labels)
        active = ~carry.stopping.stopped
        stopping, improved = early_stopping_update(
            carry.stopping, val_loss, patience=patience
        )
        best = jax.tree.map(
            lambda new, old: jnp.where(improved, new, old),
            carry.params,
            carry.best_params,
        )
        metrics = {
            "train_loss": carry.train_loss / n_train,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        metrics = {k: jnp.where(active, v, jnp.nan) for k, v in metrics.items()}
        zero = jnp.zeros_like
        new = carry._replace(
            best_params=best,
            stopping=stopping,
            train_loss=zero(carry.train_loss),
            val_sums=zero(carry.val_sums),
        )
        return new, metrics

    return Steps(*(_under_precision(fn, precision) for fn in (train_step, eval_chunk, end_epoch)))


def over_configs(
    fn: Callable[..., Any], in_axes: tuple[int | None, ...], mesh: Mesh | None
) -> Callable[..., Any]:
    """vmap ``fn`` over the configuration axis (``in_axes`` 0) of a grid.

    With a mesh, each device vmaps its own slice of configurations
    (:func:`jax.shard_map`); arguments with ``in_axes`` ``None`` are replicated.
    """
    mapped = jax.vmap(fn, in_axes=in_axes)
    if mesh is None:
        return mapped
    specs = tuple(PartitionSpec("config") if a == 0 else PartitionSpec() for a in in_axes)
    return jax.shard_map(
        mapped,
        mesh=mesh,
        in_specs=specs,
        out_specs=PartitionSpec("config"),
        check_vma=False,  # purely per-device work, no collectives to check
    )
