"""Layer groups of Amorim et al. (2020) as boolean masks over parameter trees.

The paper regularises one group of layers at a time (§III-A): ``B1``, ``B2``,
``B3`` are the first, second and third convolutional block, ``D1`` and ``D2`` the
first and second fully-connected layer, ``B`` all convolutional blocks, ``D`` all
fully-connected layers and ``A`` all layers.

Groups are read from parameter paths, so they work for any model whose layers are
named like :class:`jaxattr.models.PaperCNN`'s: ``block{b}_conv{c}`` belongs to
block ``b`` and ``dense{d}`` is fully-connected layer ``d``. Only **kernels** (leaves
named ``kernel``) are ever selected; **biases are never decayed**, like Keras'
``kernel_regularizer`` that the paper used. A kernel of a layer named otherwise is
selected by ``A`` only.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import jax

__all__ = [
    "GROUPS",
    "NOT_DECAYED",
    "OTHER_KERNEL",
    "check_group",
    "group_mask",
    "in_group",
    "layer_labels",
]

PyTree = Any

GROUPS: tuple[str, ...] = ("B1", "B2", "B3", "D1", "D2", "B", "D", "A")
"""The paper's layer groups, in the order of its tables."""

NOT_DECAYED = "none"
"""Label of leaves that no group selects (biases and every non-kernel leaf)."""

OTHER_KERNEL = "kernel"
"""Label of kernels of layers named neither ``block{b}_conv{c}`` nor ``dense{d}``."""

_LAYER_LABELS = (
    (re.compile(r"block(\d+)_conv\d+"), "B"),
    (re.compile(r"dense(\d+)"), "D"),
)


def check_group(group: str) -> str:
    """Return ``group`` if it is one of :data:`GROUPS`, else raise ``ValueError``."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    return group


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _label(path: tuple[Any, ...]) -> str:
    names = [_key_name(k) for k in path]
    if not names or names[-1] != "kernel":
        return NOT_DECAYED
    layer = names[-2] if len(names) > 1 else ""
    for pattern, prefix in _LAYER_LABELS:
        match = pattern.fullmatch(layer)
        if match:
            return f"{prefix}{int(match.group(1))}"
    return OTHER_KERNEL


def layer_labels(params: PyTree) -> PyTree:
    """Label every leaf of ``params`` with the paper layer it belongs to.

    Kernels of ``block{b}_conv{c}`` get ``"B{b}"``, kernels of ``dense{d}`` get
    ``"D{d}"``, other kernels :data:`OTHER_KERNEL`, every other leaf (biases)
    :data:`NOT_DECAYED`. The result has the structure of ``params`` with strings
    as leaves, ready for :func:`optax.partition`.
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _label(path), params)


def in_group(label: str, group: str) -> bool:
    """Whether a leaf labelled ``label`` (see :func:`layer_labels`) is in ``group``."""
    check_group(group)
    if label == NOT_DECAYED:
        return False
    if group == "A":
        return True
    if group in ("B", "D"):
        return label != OTHER_KERNEL and label.startswith(group)
    return label == group


def _labels_of(params: PyTree) -> Iterable[str]:
    return sorted(set(jax.tree_util.tree_leaves(layer_labels(params))))


def group_mask(params: PyTree, group: str) -> PyTree:
    """Boolean mask over ``params``: ``True`` for the kernels of the layer group.

    Biases and all other non-kernel leaves are ``False`` for every group. The mask
    has the structure of ``params``, as :func:`optax.masked` and
    :func:`optax.add_decayed_weights` expect.

    Args:
      params: a parameter tree, e.g. ``model.init(...)["params"]`` of
        :class:`jaxattr.models.PaperCNN` (the ``{"params": ...}`` wrapper works too).
      group: one of :data:`GROUPS`.

    Raises:
      ValueError: ``group`` is unknown, or it selects no kernel of ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxattr.models import small_paper_cnn
      >>> params = small_paper_cnn().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
      >>> mask = group_mask(params["params"], "D")
      >>> mask["dense1"], mask["block1_conv1"]
      ({'bias': False, 'kernel': True}, {'bias': False, 'kernel': False})
    """
    check_group(group)
    mask = jax.tree.map(lambda label: in_group(label, group), layer_labels(params))
    if not any(jax.tree_util.tree_leaves(mask)):
        raise ValueError(
            f"group {group!r} selects no kernel of params; the kernels found are "
            f"labelled {[l for l in _labels_of(params) if l != NOT_DECAYED]} "
            "(layers must be named block{b}_conv{c} or dense{d})"
        )
    return mask
