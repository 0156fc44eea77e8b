"""The public entry points: :func:`attribute` and :func:`explain`."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .methods import Gradient, Method
from .xla import backward_options

Array = jax.Array


def _check_x(x) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array (batch, ...), got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}; convert it, e.g. "
                        "x.astype(jnp.float32)")
    if x.ndim < 1:
        raise ValueError(f"x must have a leading batch axis, got a scalar of shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch (shape {x.shape}); pass at least one example")


def _check_values(x, target, n_classes: int) -> None:
    """Value checks, done only on concrete (non-traced) inputs."""
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("x contains NaN or Inf values; attributions of non-finite inputs are "
                         "meaningless. Clean or mask the input first.")
    if target is not None and not isinstance(target, jax.core.Tracer):
        t = np.asarray(target)
        if t.min() < 0 or t.max() >= n_classes:
            raise ValueError(f"target out of range: got class indices {t.tolist()}, the model has "
                             f"{n_classes} classes (0..{n_classes - 1})")


def _check_target(target, batch: int):
    if target is None:
        return None
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.ndim == 0:
        target = jnp.broadcast_to(target, (batch,))
    if target.shape != (batch,):
        raise ValueError(f"target must have shape (batch,) = ({batch},) or be a scalar, got shape "
                         f"{target.shape}")
    return target


def _check_output(apply_fn, params, x):
    try:
        out = jax.eval_shape(apply_fn, params, x)
    except Exception as err:  # the model itself rejects x: say so, keep the model's message
        raise ValueError(f"apply_fn(params, x) failed for x of shape {x.shape} and dtype {x.dtype}; "
                         f"does x match what the model expects? The model said: "
                         f"{type(err).__name__}: {err}") from err
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"apply_fn must return logits of shape (batch, classes) = ({x.shape[0]}, "
                         f"n); got {getattr(out, 'shape', type(out).__name__)}. Explain the logits "
                         "(before any softmax), one row per example.")
    return out.shape[1]


def _attribute(apply_fn, method: Method, params, x, target, key):
    if method.needs_key and key is None:
        key = jax.random.key(0)
    return method.compute(apply_fn, params, x, target, key)


@functools.lru_cache(maxsize=64)
def explain(apply_fn: Callable, method: Method = Gradient()) -> Callable:
    """A jitted ``(params, x, target=None, key=None) -> relevance`` for ``apply_fn`` and ``method``.

    ``apply_fn(params, x) -> logits`` must be pure (a Flax Linen ``model.apply``, an NNX model
    split into a function, or plain jax). It compiles once per input shape and runs as one XLA
    program; ``jax.vmap`` over it works.

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: jnp.tanh(x @ p["w"])
        >>> params = {"w": jnp.ones((3, 2))}
        >>> explain_fn = ja.explain(f, ja.GradientXInput())
        >>> explain_fn(params, jnp.ones((4, 3))).shape
        (4, 3)
    """
    if not isinstance(method, Method):
        raise TypeError(f"method must be a jaxattr method (ja.Gradient(), ja.LRP(...), ...), got "
                        f"{type(method).__name__}")
    compute = functools.partial(_attribute, apply_fn, method)
    # Compiler options apply to a top-level program only; inside a user's jit/grad/vmap the
    # outer program's options hold.
    top_level, nested = jax.jit(compute, compiler_options=backward_options()), jax.jit(compute)
    n_classes: dict = {}  # per input signature

    def fn(params, x, target=None, key=None):
        _check_x(x)
        sig = (tuple(x.shape), str(x.dtype))
        if sig not in n_classes:
            n_classes[sig] = _check_output(apply_fn, params, x)
        target = _check_target(target, x.shape[0])
        _check_values(x, target, n_classes[sig])
        traced = any(isinstance(leaf, jax.core.Tracer)
                     for leaf in jax.tree_util.tree_leaves((params, x, target, key)))
        return (nested if traced else top_level)(params, x, target, key)

    return fn


def attribute(apply_fn: Callable, params: Any, x: Array, target: Optional[Array] = None,
              method: Method = Gradient(), key: Optional[Array] = None) -> Array:
    """Attribution of ``apply_fn(params, x)[i, target[i]]`` to ``x``; same shape as ``x``.

    Args:
        apply_fn: pure ``(params, x) -> logits`` of shape (batch, classes).
        params: the model's parameters (any pytree).
        x: floating-point inputs with a leading batch axis.
        target: int class per example, shape (batch,) or a scalar; ``None`` = predicted class.
        method: an attribution method, e.g. ``ja.LRP(ja.composites.epsilon_plus_flat())``.
        key: PRNG key for stochastic methods (SmoothGrad); defaults to ``jax.random.key(0)``.

    Raises:
        TypeError / ValueError: with what to change, for non-float or empty ``x``, NaN/Inf,
            a model that rejects ``x``, output not (batch, classes), bad ``target``, and any
            x-dependent primitive no rule covers (:class:`UnsupportedPrimitiveError`).
    """
    try:
        fn = explain(apply_fn, method)
    except TypeError as err:  # unhashable apply_fn: compile without the cache
        if "unhashable" not in str(err):
            raise
        fn = explain.__wrapped__(apply_fn, method)
    return fn(params, x, target, key)
