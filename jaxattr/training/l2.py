r"""Per-layer-group L2 regularisation as optax transformations.

Two forms of "weight decay λ" are offered:

* **coupled** (the paper's, Keras ``kernel_regularizer=l2(λ)``): the training loss
  becomes :math:`L(w) + λ \sum_{k \in \text{mask}} w_k^2`, so ``2λw`` is added to the
  gradient *before* Adam rescales it:
  ``optax.chain(optax.add_decayed_weights(2 * λ, mask), optax.adam(lr))``.
* **decoupled** (AdamW, Loshchilov & Hutter 2019): Adam's update gets ``λw`` added
  *after* rescaling, :math:`w \leftarrow w - \eta(\hat m / (\sqrt{\hat v} + ε) + λ w)`
  on the masked kernels, i.e. :func:`optax.adamw` with ``weight_decay=λ``.

Masks select kernels only (see :mod:`jaxattr.training.groups`); biases are never
decayed. The paper (Amorim et al., "Interpretability vs. Complexity", IJCNN 2020)
writes the penalty as :math:`\tfrac12\|w\|_2^2` (its eq. 1) but trained with Keras,
whose ``l2(λ)`` adds :math:`λ\sum w^2`; the Keras convention is used here.
Adam and its learning rate are not given in the paper (our choice: Adam, 1e-3).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxattr.training.groups import NOT_DECAYED

__all__ = [
    "adam_l2",
    "check_decay",
    "coupled_l2",
    "grouped_adam_l2",
    "grouped_l2_penalty",
    "l2_penalty",
]

PyTree = Any


def check_decay(decay: Any, name: str = "decay") -> Any:
    """Raise ``ValueError`` unless ``decay`` is a finite number ≥ 0.

    Traced values (inside ``jit``/``vmap``) cannot be inspected and pass through.
    """
    if isinstance(decay, jax.core.Tracer):
        return decay
    try:
        value = float(decay)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a real number >= 0, got {decay!r} "
            f"of type {type(decay).__name__}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {decay!r}")
    return decay


def _check_learning_rate(learning_rate: float) -> None:
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(
            f"learning_rate must be a positive number, got {learning_rate!r}"
        )


def l2_penalty(params: PyTree, decay: Any, mask: PyTree | None = None) -> jax.Array:
    r"""The coupled penalty :math:`λ \sum_{k \in \text{mask}} w_k^2`.

    Args:
      params: parameter tree.
      decay: λ ≥ 0.
      mask: boolean tree like ``params`` (``None``: every leaf).
    """
    check_decay(decay)
    if mask is None:
        mask = jax.tree.map(lambda _: True, params)
    squares = jax.tree.map(
        lambda m, w: jnp.sum(jnp.square(w)) if m else jnp.zeros(()), mask, params
    )
    return decay * sum(jax.tree_util.tree_leaves(squares))


def grouped_l2_penalty(
    params: PyTree, decays: Mapping[str, Any], labels: PyTree
) -> jax.Array:
    r""":math:`\sum_\ell λ_\ell \sum_{k \in \ell} w_k^2` with one decay per label.

    ``labels`` comes from :func:`jaxattr.training.groups.layer_labels`; leaves
    labelled :data:`~jaxattr.training.groups.NOT_DECAYED` add nothing.
    """
    terms = jax.tree.map(
        lambda label, w: (
            jnp.zeros(()) if label == NOT_DECAYED
            else decays[label] * jnp.sum(jnp.square(w))
        ),
        labels,
        params,
    )
    return sum(jax.tree_util.tree_leaves(terms))


def coupled_l2(decay: Any, mask: PyTree | None = None) -> optax.GradientTransformation:
    r"""Add the gradient of :math:`λ\sum_{k\in\text{mask}} w_k^2`, i.e. ``2λw``.

    Chain it *before* the optimiser to get Keras' ``kernel_regularizer=l2(λ)``.

    Raises:
      ValueError: ``decay`` is negative or not finite.

    Examples:
      >>> import optax
      >>> tx = optax.chain(coupled_l2(1e-3), optax.adam(1e-3))
    """
    check_decay(decay)
    return optax.add_decayed_weights(2 * decay, mask)


def _with_adam(
    decay_tx: optax.GradientTransformation, learning_rate: float, coupled: bool
) -> optax.GradientTransformation:
    if coupled:
        return optax.chain(decay_tx, optax.adam(learning_rate))
    return optax.chain(
        optax.scale_by_adam(), decay_tx, optax.scale_by_learning_rate(learning_rate)
    )


def adam_l2(
    learning_rate: float = 1e-3,
    decay: Any = 0.0,
    mask: PyTree | None = None,
    *,
    coupled: bool = True,
) -> optax.GradientTransformation:
    r"""Adam with L2 weight decay ``decay`` on the leaves selected by ``mask``.

    ``coupled=True``: ``chain(add_decayed_weights(2λ, mask), adam(lr))`` (Keras
    ``l2(λ)``, the paper's). ``coupled=False``: AdamW, equal to
    ``optax.adamw(lr, weight_decay=λ, mask=mask)``.

    Args:
      learning_rate: Adam's step size (default 1e-3; not given in the paper).
      decay: λ ≥ 0.
      mask: boolean tree, e.g. :func:`jaxattr.training.groups.group_mask`.
      coupled: which form of decay (see the module docstring).
    """
    _check_learning_rate(learning_rate)
    check_decay(decay)
    factor = 2 if coupled else 1
    return _with_adam(
        optax.add_decayed_weights(factor * decay, mask), learning_rate, coupled
    )


def grouped_adam_l2(
    learning_rate: float,
    decays: Mapping[str, Any],
    labels: PyTree,
    *,
    coupled: bool = True,
) -> optax.GradientTransformation:
    r"""Adam with one L2 decay per layer label, built with :func:`optax.partition`.

    Every label of ``labels`` (from
    :func:`jaxattr.training.groups.layer_labels`) except
    :data:`~jaxattr.training.groups.NOT_DECAYED` needs a decay in ``decays``. The
    decays may be traced arrays, so one function can train many configurations
    under ``jax.vmap``: a paper configuration ``(λ, group)`` is
    ``{label: λ if in_group(label, group) else 0}``, the group mask as 0/1 times λ.
    With that mapping this equals ``adam_l2(learning_rate, λ, group_mask(...))``.
    """
    _check_learning_rate(learning_rate)
    for label, decay in decays.items():
        check_decay(decay, f"decays[{label!r}]")
    factor = 2 if coupled else 1
    transforms = {
        label: optax.add_decayed_weights(factor * decay)
        for label, decay in decays.items()
    }
    transforms[NOT_DECAYED] = optax.identity()
    return _with_adam(optax.partition(transforms, labels), learning_rate, coupled)
