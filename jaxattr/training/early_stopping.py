"""Early stopping on a monitored loss as a pure state machine.

Keras' ``EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)``,
which Amorim et al. (2020, §III-A: "stopping training after 10 epochs of no
improvement") used, written as ``(state, loss) -> state`` on a NamedTuple of arrays:
it runs under ``jit``, and under ``vmap`` one state per configuration stops each
configuration on its own.

An epoch *improves* when ``loss < best_loss - min_delta``; NaN never improves. After
``patience`` epochs in a row without improvement the state is *stopped* and every
later update leaves it unchanged, so a stopped configuration of a vmapped grid keeps
its best epoch while the others train on. The caller keeps a copy of the parameters
whenever ``improved`` is true and restores it at the end.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EarlyStoppingState", "early_stopping_init", "early_stopping_update"]


class EarlyStoppingState(NamedTuple):
    """State of :func:`early_stopping_update` (all fields are arrays).

    Attributes:
      epoch: number of losses seen while not stopped.
      best_loss: lowest loss seen (``inf`` before the first).
      best_epoch: 0-based epoch of ``best_loss`` (-1 before the first).
      wait: epochs since the last improvement.
      stopped: whether patience ran out.
    """

    epoch: jax.Array
    best_loss: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    stopped: jax.Array


def early_stopping_init() -> EarlyStoppingState:
    """The state before the first epoch."""
    return EarlyStoppingState(
        epoch=jnp.asarray(np.int32(0)),
        best_loss=jnp.asarray(np.float32(np.inf)),
        best_epoch=jnp.asarray(np.int32(-1)),
        wait=jnp.asarray(np.int32(0)),
        stopped=jnp.asarray(np.bool_(False)),
    )


def early_stopping_update(
    state: EarlyStoppingState,
    loss: jax.Array,
    *,
    patience: int = 10,
    min_delta: float = 0.0,
) -> tuple[EarlyStoppingState, jax.Array]:
    """Feed one epoch's monitored loss.

    Args:
      state: from :func:`early_stopping_init` or a previous update.
      loss: the epoch's monitored (validation) loss, a scalar.
      patience: epochs without improvement before stopping (≥ 1; the paper: 10).
      min_delta: how much lower than the best a loss must be to count.

    Returns:
      ``(new_state, improved)``: ``improved`` is true when this epoch is the new
      best (never once stopped): keep its parameters.

    Examples:
      >>> state = early_stopping_init()
      >>> for loss in [3.0, 2.0, 2.5, 2.4]:
      ...     state, improved = early_stopping_update(state, loss, patience=2)
      >>> int(state.best_epoch), bool(state.stopped)
      (1, True)
    """
    if not (isinstance(patience, int) and patience >= 1):
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    loss = jnp.asarray(loss, jnp.float32)
    active = ~state.stopped
    improved = active & (loss < state.best_loss - min_delta)
    wait = jnp.where(improved, 0, state.wait + 1)
    new = EarlyStoppingState(
        epoch=state.epoch + 1,
        best_loss=jnp.where(improved, loss, state.best_loss),
        best_epoch=jnp.where(improved, state.epoch, state.best_epoch),
        wait=wait,
        stopped=wait >= patience,
    )
    new = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, state)
    return new, improved
