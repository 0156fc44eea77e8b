"""DeepLIFT's weight normalisations: pure functions ``params -> params`` that leave the model's
output unchanged (on its intended inputs) but make multipliers, hence contributions, meaningful.

* :func:`normalize_softmax_weights` — paper eq. 21 (Shrikumar et al. 2016, §2.5): subtract the
  mean over classes from the final layer's weights and bias. Every logit moves by the same amount
  per example, so the softmax is unchanged; an input that pushes all classes equally now
  contributes zero to each logit.
* :func:`normalize_one_hot_weights` — paper eq. 22 (§2.6): for inputs constrained to sum to a
  constant ``c`` over a channel group (one-hot DNA: ``Σ_{A,C,G,T} x = 1`` at every position),
  subtract the per-position mean over channels ``μ`` from the first layer's weights and add
  ``c·Σμ`` to its bias. The output is unchanged for every input that satisfies the constraint.

Explain pre-softmax / pre-sigmoid values. The paper (§2.4–2.5) computes contributions to the
logit, not to the probability (a sigmoid or softmax saturates at 1, so redundant evidence
attenuates the scores). That is this library's default: ``apply_fn`` returns logits and every
method explains the target logit. Normalise with eq. 21 first when the classes compete through a
softmax; a per-task sigmoid (multi-task genomics models) needs no normalisation.

Both functions take a params pytree of nested mappings (Flax Linen's ``{"params": {...}}`` or a
plain dict) and return a new one; nothing is modified in place. A *layer* is a mapping holding a
``kernel`` (and usually a ``bias``) leaf. ``layer=None`` picks the first (eq. 22) or last
(eq. 21) such mapping in the params' insertion order, which is the order Flax Linen creates
modules in; pass the layer's name (``"out"``), or a tuple path (``("params", "out")``) to be
explicit.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxattr.weight_norm import normalize_softmax_weights
    >>> params = {"dense": {"kernel": jnp.array([[1.0, 3.0]]), "bias": jnp.array([0.0, 2.0])}}
    >>> normalize_softmax_weights(params)["dense"]["kernel"].tolist()
    [[-1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import jax.numpy as jnp

__all__ = ["normalize_softmax_weights", "normalize_one_hot_weights", "layer_paths"]

LayerSpec = Optional[Union[str, Sequence[str]]]


def layer_paths(params: Any, kernel: str = "kernel") -> list:
    """Paths (tuples of keys) of every mapping in ``params`` that holds a ``kernel`` leaf, in
    insertion order (Flax Linen: module creation order)."""
    out: list = []

    def walk(node, path):
        if not isinstance(node, Mapping):
            return
        if kernel in node and not isinstance(node[kernel], Mapping):
            out.append(path)
        for k, v in node.items():
            walk(v, path + (k,))

    walk(params, ())
    return out


def _resolve(params, layer: LayerSpec, kernel: str, which: str) -> tuple:
    paths = layer_paths(params, kernel)
    if not paths:
        raise ValueError(f"params hold no layer with a {kernel!r} leaf; pass kernel=<name of the "
                         "weight leaf> for models that name it differently")
    if layer is None:
        return paths[0] if which == "first" else paths[-1]
    if isinstance(layer, str):
        found = [p for p in paths if p and p[-1] == layer]
        if len(found) != 1:
            names = ", ".join("/".join(map(str, p)) for p in paths)
            raise ValueError(f"layer {layer!r} matches {len(found)} layers; the layers are: {names}. "
                             "Pass a unique name or a tuple path")
        return found[0]
    path = tuple(layer)
    if path not in paths:
        names = ", ".join("/".join(map(str, p)) for p in paths)
        raise ValueError(f"layer path {path!r} is not a layer of params; the layers are: {names}")
    return path


def _get(params, path):
    for k in path:
        params = params[k]
    return params


def _replace(params, path, new_layer):
    """A copy of ``params`` with the mapping at ``path`` replaced (other nodes shared)."""
    if not path:
        return new_layer
    out = dict(params)
    out[path[0]] = _replace(params[path[0]], path[1:], new_layer)
    return out


def normalize_softmax_weights(params: Any, layer: LayerSpec = None, *, kernel: str = "kernel",
                              bias: str = "bias") -> Any:
    """Mean-normalise the final (softmax) layer over classes, paper eq. 21:

    .. math:: \\bar w_{x y_i} = w_{x y_i} − \\frac1n \\sum_{i'} w_{x y_{i'}}, \\qquad
              \\bar b_{y_i} = b_{y_i} − \\frac1n \\sum_{i'} b_{y_{i'}}

    The class axis is the kernel's last axis (Flax ``Dense``: ``(in, classes)``; a 1×1
    ``Conv`` classifier: ``(..., in, classes)``). Each logit changes by the same per-example
    amount, so ``softmax(logits)`` is unchanged.

    Args:
        params: parameters pytree (nested mappings).
        layer: the final layer (``None``: the last layer in insertion order), a name or a path.
        kernel, bias: leaf names of the weight and bias.
    """
    path = _resolve(params, layer, kernel, "last")
    node = dict(_get(params, path))
    w = jnp.asarray(node[kernel])
    node[kernel] = w - w.mean(axis=-1, keepdims=True)
    if bias in node:
        b = jnp.asarray(node[bias])
        node[bias] = b - b.mean(axis=-1, keepdims=True)
    return _replace(params, path, node)


def normalize_one_hot_weights(params: Any, layer: LayerSpec = None, *, channels: Optional[int] = None,
                              total: float = 1.0, kernel: str = "kernel", bias: str = "bias") -> Any:
    """Normalise the first layer for constrained (one-hot) inputs, paper eq. 22:

    .. math:: \\bar w_{xy} = w_{xy} − μ, \\qquad \\bar b_y = b_y + c\\,μ

    for every group of inputs ``S`` with ``Σ_{x∈S} A_x = c``, ``μ`` the mean of ``w_{xy}`` over
    ``S``; summed over the groups a unit sees. For a convolution over one-hot channels (kernel
    ``(*window, channels, out)``, Flax ``Conv``), each window position is a group: ``μ`` is the mean
    over the kernel's channel axis (-2) and the bias gains ``c · Σ_{positions} μ``. For a dense
    layer on a flattened ``(..., channels)`` one-hot input, pass ``channels``: the input axis is
    read as ``(positions, channels)`` in C order.

    The output is unchanged for every input whose channels sum to ``total`` at every position
    (a VALID convolution, or a dense layer). Under SAME/zero padding the padded border positions
    sum to 0, not ``total``, so outputs that overlap the border change.

    Args:
        params: parameters pytree (nested mappings).
        layer: the first layer (``None``: the first layer in insertion order), a name or a path.
        channels: for a dense kernel, the size of each one-hot group (e.g. 4 for DNA).
        total: the constant the channels sum to (1 for one-hot).
        kernel, bias: leaf names of the weight and bias.

    Raises:
        ValueError: no bias to absorb the shift, or a kernel that cannot be split into groups.
    """
    path = _resolve(params, layer, kernel, "first")
    node = dict(_get(params, path))
    if bias not in node:
        raise ValueError(f"layer {'/'.join(map(str, path))} has no {bias!r} leaf to absorb the mean "
                         "(eq. 22 moves it into the bias); build the layer with a bias")
    w = jnp.asarray(node[kernel])
    if channels is None:
        if w.ndim < 3:
            raise ValueError(f"layer {'/'.join(map(str, path))} has a kernel of shape {w.shape}, not a "
                             "convolution (*window, channels, out); for a dense layer on flattened "
                             "one-hot input pass channels=<group size>")
        grouped = w
    else:
        if w.ndim != 2 or w.shape[0] % channels:
            raise ValueError(f"a dense kernel of shape {w.shape} cannot be split into one-hot groups "
                             f"of {channels} channels")
        grouped = w.reshape(w.shape[0] // channels, channels, w.shape[1])
    mu = grouped.mean(axis=-2, keepdims=True)
    node[kernel] = (grouped - mu).reshape(w.shape)
    shift = total * mu.sum(axis=tuple(range(mu.ndim - 1)))
    node[bias] = jnp.asarray(node[bias]) + shift.astype(jnp.asarray(node[bias]).dtype)
    return _replace(params, path, node)
