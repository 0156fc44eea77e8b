"""The public entry points: :func:`attribute` and :func:`explain`.

Checks, and where they run (so that a warm call costs what the compiled program costs):

* *static* checks (x's type, dtype and shape, the target's dtype and shape, the key's type, the
  data arguments' names) run in Python on every call and cost microseconds;
* checks that need the model (``apply_fn(params, x)`` runs and returns ``(batch, classes)``) run
  while the program is traced, so they are done once per compiled signature and keyed by
  everything the program depends on (the shapes and dtypes of params, x, target, key and data);
* *value* checks (NaN/Inf in x or in a reference passed as data, target out of range) are
  computed inside the attribution program itself: one status word comes back with the result
  and a bad status raises the same ``ValueError``, without a separate dispatch or host round trip
  before the program. Inside a trace (a ``jax.jit``/``grad``/``vmap`` of the user's) a value
  cannot raise; there they are left out by default, because a
  :func:`jax.experimental.checkify.debug_check` in a program gives it an effect, and a jitted
  function with an effect loses jax's C++ dispatch path (measured: ~45 µs more per call of a
  tiny jitted function, 47 → 208 µs for a small ``ja.attribute`` inside ``jax.jit``). Inside
  :func:`checks_in_traces` they are emitted as ``debug_check`` s, which
  ``checkify.checkify(fn, errors=checkify.user_checks)`` raises.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import functools
import os
import sys
import warnings
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from . import methods as _methods
from . import precision as _precision
from .methods import Gradient, Method
from .xla import backward_options

Array = jax.Array

try:  # the cheap question "is a jit/grad/vmap trace active?" (jax >= 0.4.36)
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover - older or newer jax: ask the arguments instead
    _trace_state_clean = None


def _check_x(x) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array (batch, ...), got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        hint = ("; for token ids or other indices, explain w.r.t. the embeddings instead: pass "
                "apply_fn(params, e) that starts from the embedded inputs e = embed(ids)"
                if jnp.issubdtype(x.dtype, jnp.integer) else "")
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}; attributions are "
                        f"taken w.r.t. continuous inputs (convert real-valued data with "
                        f"x.astype(jnp.float32)){hint}")
    if len(x.shape) < 1:
        raise ValueError(f"x must have a leading batch axis, got a scalar of shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch (shape {x.shape}); pass at least one example")


def _check_target(target, batch: int):
    """Target's dtype and shape, without touching its values (no dispatch, no transfer)."""
    if target is None:
        return None
    if isinstance(target, int) and not isinstance(target, bool):
        return target  # a weakly typed scalar: one compiled program for every class index
    if not hasattr(target, "dtype"):
        target = np.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.shape not in ((), (batch,)):
        raise ValueError(f"target must have shape (batch,) = ({batch},) or be a scalar, got shape "
                         f"{target.shape}")
    return target


def _check_key(key):
    if key is None:
        return None
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key)
                              or (dtype == jnp.uint32 and key.shape[-1:] == (2,))):
        return key
    raise TypeError(f"key must be a JAX PRNG key, e.g. jax.random.key(0), got "
                    f"{type(key).__name__} {key!r}" if dtype is None else
                    f"key must be a JAX PRNG key, e.g. jax.random.key(0), got an array of dtype "
                    f"{dtype} and shape {key.shape}")


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


# --- data arguments: arrays a method holds (a DeepLIFT reference, an IG baseline) travel into the
# program as traced arguments, so a new array does not compile a new program.

class _Data:
    """Placeholder in a method's field whose value is passed to the program as an argument."""

    def __repr__(self):
        return "<passed at call time>"


_DATA = _Data()


def _with_placeholders(method: Method, names) -> Method:
    names = [n for n in names if getattr(method, n) is not _DATA]
    if not names:
        return method
    static = copy.copy(method)
    for name in names:
        object.__setattr__(static, name, _DATA)
    return static


def _split_data(method: Method):
    """``(method without its array-valued data fields, {field: array})``."""
    data = {n: getattr(method, n) for n in method.data_fields
            if isinstance(getattr(method, n), (np.ndarray, jax.Array))}
    return _with_placeholders(method, data), data


def _check_data(method: Method, data: dict) -> dict:
    out = {}
    for name, value in data.items():
        if name not in method.data_fields:
            allowed = ", ".join(f"{n}=" for n in method.data_fields) or "none"
            raise TypeError(f"{type(method).__name__} takes no {name}= argument at call time "
                            f"(data arguments of this method: {allowed})")
        if callable(value):
            raise TypeError(f"{name}= at call time must be an array or a number (traced data); put "
                            f"a callable in the method instead: {type(method).__name__}({name}=fn)")
        if isinstance(value, (list, tuple)):
            value = np.asarray(value)
        dtype = getattr(value, "dtype", None)
        if not (isinstance(value, (int, float)) or (dtype is not None and (
                jnp.issubdtype(dtype, jnp.number) or dtype == bool))):
            raise TypeError(f"{name}= must be an array or a number, got {type(value).__name__}")
        out[name] = value
    return out


# --- the program

#: value checks: (bit of the status word, message); the target's message is completed on the host
#: (with the offending indices) and data arrays take the bits from 4 up
_NAN_X = (1, "x contains NaN or Inf values; attributions of non-finite inputs are meaningless. "
             "Clean or mask the input first.")
_RANGE_BIT = 2
#: the attribution itself is not finite (its message is chosen on the host: see _raise)
_NONFINITE_BIT = 1 << 30
_NONFINITE = ("the attribution is not finite (NaN or Inf), or the model's output for the target "
              "class at x is not: the model's output at x, or at a reference, baseline or noisy "
              "copy the method evaluates, is not finite")
#: a warning, not an error: Integrated Gradients misses completeness (see _warn_incomplete)
_INCOMPLETE_BIT = 1 << 29
#: DeepLIFT's contributions do not sum to delta (its message is completed on the host)
_INEXACT_BIT = 1 << 28
_INEXACT = ("DeepLIFT's contributions do not sum to f_t(x) − f_t(reference) (summation to "
            "delta), which they must exactly")


def _full_precision() -> bool:
    """Whether the program being traced multiplies matrices in full float32 (or float64):
    ``precision="float32"``, jaxattr's default (on a GPU the backend's default is TF32)."""
    return str(jax.config.jax_default_matmul_precision) in ("highest", "float32")


def _nan_data(method: Method, name: str, bit: int):
    return (bit, f"{type(method).__name__} {name} contains NaN or Inf values; pass a finite {name}")


#: whether value checks are emitted inside a user's trace (see :func:`checks_in_traces`)
_CHECKS_IN_TRACES = contextvars.ContextVar(
    "jaxattr_checks_in_traces",
    default=os.environ.get("JAXATTR_CHECKS_IN_TRACES", "") not in ("", "0"))


@contextlib.contextmanager
def checks_in_traces(enabled: bool = True):
    """Emit the value checks (NaN/Inf in x or the data, target out of range) as
    :func:`jax.experimental.checkify.debug_check` s when a jaxattr call is traced inside your
    own ``jax.jit``/``grad``/``vmap``, so that ``checkify.checkify(fn,
    errors=checkify.user_checks)`` raises them. Off by default: such a check gives the program an
    effect, and a jitted function with an effect is dispatched by Python, not by jax's C++ path
    (tens of µs more per call). The setting applies when your function is *traced*: enter the
    context before its first call (a function jitted and traced before keeps its program).
    ``JAXATTR_CHECKS_IN_TRACES=1`` turns it on for the whole process.

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> from jax.experimental import checkify
        >>> f = lambda p, x: jnp.tanh(x @ p)
        >>> fn = lambda x: ja.attribute(f, jnp.ones((3, 2)), x)
        >>> with ja.checks_in_traces():
        ...     err, _ = checkify.checkify(jax.jit(fn), errors=checkify.user_checks)(
        ...         jnp.full((1, 3), jnp.nan))
        >>> "NaN or Inf" in err.get()
        True
    """
    token = _CHECKS_IN_TRACES.set(enabled)
    try:
        yield
    finally:
        _CHECKS_IN_TRACES.reset(token)


def _program(apply_fn, method: Method, nested, params, x, target, key, data):
    """The attribution and its value checks, as one traced function.

    ``nested``: ``False`` (a top-level program): returns the relevance and an int32 status word,
    0 when every check holds; ``"checked"`` / ``"unchecked"`` (inside a user's trace): returns
    the relevance alone, with the checks as ``checkify.debug_check`` s or without them."""
    n_classes = _check_output(apply_fn, params, x)  # at trace time: once per signature
    if data:
        method = dataclasses.replace(method, **data)
    checks = [(jnp.all(jnp.isfinite(x)), _NAN_X)]
    if target is not None:
        target = jnp.broadcast_to(jnp.asarray(target), x.shape[:1])
        checks.append((jnp.all((target >= 0) & (target < n_classes)),
                       (_RANGE_BIT, f"target out of range: the model has {n_classes} classes "
                                   f"(0..{n_classes - 1})")))
    for i, (name, value) in enumerate(sorted(data.items())):
        checks.append((jnp.all(jnp.isfinite(jnp.asarray(value, x.dtype))),
                       _nan_data(method, name, 4 << i)))
    if method.needs_key and key is None:
        key = jax.random.key(0)
    relevance, score, gap = method.compute(apply_fn, params, x, target, key)
    finite = jnp.all(jnp.isfinite(relevance)) & jnp.all(jnp.isfinite(score))
    checks.append((finite, (_NONFINITE_BIT, _NONFINITE)))
    # summation to delta: an error for an exact method (at full matmul precision), a warning
    # (top level only: it needs the host) for one that approximates it
    if gap is not None and method.exact and _full_precision():
        checks.append((~jnp.any(gap > method.delta_tolerance), (_INEXACT_BIT, _INEXACT)))
    if nested:
        if nested == "checked":
            for ok, (_, message) in checks:
                checkify.debug_check(ok, message)
        return relevance
    if gap is not None and not method.exact:
        checks.append((~jnp.any(gap > method.completeness_warning), (_INCOMPLETE_BIT, "")))
    status = sum(jnp.where(ok, 0, bit) for ok, (bit, _) in checks)
    return relevance, jnp.asarray(status, jnp.int32)


def _raise(status: int, apply_fn, method, params, x, target, data, relevance=None):
    """The ``ValueError`` of the first failed value check (only on the error path)."""
    if status & _NAN_X[0]:
        raise ValueError(_NAN_X[1])
    if status & _RANGE_BIT:
        n = _check_output(apply_fn, params, x)
        t = np.broadcast_to(np.asarray(target), x.shape[:1])
        raise ValueError(f"target out of range: got class indices {t.tolist()}, the model has "
                         f"{n} classes (0..{n - 1})")
    for i, name in enumerate(sorted(data)):
        if status & (4 << i):
            raise ValueError(_nan_data(method, name, 0)[1])
    if status & _NONFINITE_BIT:
        raise ValueError(_nonfinite_message(apply_fn, method, params, x, target))
    if status & _INEXACT_BIT:
        bad, gap = _completeness_gaps(apply_fn, method, params, x, target, data, relevance,
                                      method.delta_tolerance)
        raise ValueError(
            f"{_INEXACT} for examples {bad.tolist()[:10]}: they miss it by "
            f"{', '.join(f'{g:.2g}' for g in gap[bad][:10])} of the change. Either float32 "
            "cancellation — contributions many times the change (DeepLIFT(normalise="
            "'symmetric') at a LayerNorm whose input is constant at the reference): use the "
            "default normalise='scale_first', or float64 (jax.experimental.enable_x64) — or a "
            "part of the model that no rule covers exactly: please report it with the model. "
            "delta_tolerance=None turns this check off.")
    raise AssertionError(f"unknown status {status}")  # pragma: no cover


def _completeness_gaps(apply_fn, method, params, x, target, data, relevance, tolerance):
    """``(examples whose gap exceeds tolerance, every example's gap)``, recomputed on the host
    from the attribution (error and warning paths only: a forward pass per reference)."""
    if data:
        method = dataclasses.replace(method, **data)
    f = jax.jit(apply_fn)
    logits = f(params, x)
    t = jnp.argmax(logits, axis=-1) if target is None else target
    refs = method.reference_points(x)
    base = sum(_methods.target_score(f(params, r), t) for r in refs) / len(refs)
    score = _methods.target_score(logits, t)
    gap = np.asarray(_methods.completeness_gap(jnp.asarray(relevance), score, base))
    return np.flatnonzero(gap > tolerance), gap


def _warn_incomplete(apply_fn, method, params, x, target, data, relevance) -> None:
    """Integrated Gradients' attributions miss ``f_t(x) − f_t(x₀)`` by more than the method's
    ``completeness_warning``: say for which examples and by how much."""
    bad, gap = _completeness_gaps(apply_fn, method, params, x, target, data, relevance,
                                  method.completeness_warning)
    warnings.warn(
        f"IntegratedGradients(steps={method.steps}): the attributions of examples "
        f"{bad.tolist()[:10]} miss completeness (Σ R = f_t(x) − f_t(baseline)) by "
        f"{', '.join(f'{g:.0%}' for g in gap[bad][:10])} of the change. The quadrature does not "
        "follow the path integral: too few steps for how much the gradient changes along the "
        "path, or a model that changes abruptly near the baseline (a LayerNorm after "
        "bias-free layers sees a constant input at the zero baseline). Use "
        "more steps, a baseline where the model is not degenerate (a constant other than 0, "
        "the data mean), or ja.DeepLIFT, which sums to the change exactly; "
        "completeness_warning=None turns this check off (this warning is issued once per "
        "explained function).",
        _methods.CompletenessWarning, stacklevel=3)


def _nonfinite_message(apply_fn, method, params, x, target) -> str:
    """Why an attribution (or the target's logit) is not finite: the model's output at ``x``
    (run once more, on this error path only), else what the method evaluates besides ``x``."""
    logits = np.asarray(jax.jit(apply_fn)(params, x))
    t = np.argmax(logits, axis=-1) if target is None else target
    bad = np.flatnonzero(~np.isfinite(np.asarray(_methods.target_score(logits, t))))
    name = type(method).__name__
    if bad.size:
        return (f"the model's output for the target class at x is not finite (NaN or Inf) for "
                f"examples {bad.tolist()[:10]}, so their {name} attribution means nothing (even "
                "where a gradient is finite, as log's is at a negative number): check the model "
                "and its parameters on these inputs.")
    other = np.flatnonzero(~np.isfinite(logits).all(axis=-1))
    if other.size:
        return (f"the {name} attribution is not finite (NaN or Inf): the model's output at x for "
                f"another class is, for examples {other.tolist()[:10]}, and the method's "
                "backward pass carries it into the target's (0 · NaN): check the model and its "
                "parameters on these inputs, or explain a model with that output cut off.")
    what = next((f for f in ("reference", "baseline") if hasattr(method, f)), None)
    if what:
        return (f"the {name} attribution is not finite (NaN or Inf) although the model's output "
                f"at x is: the model is not finite at the {what} or on the way to it (a division "
                "by a norm that is 0 at the zero reference, x / ‖x‖; a log of 0). Pass another "
                f"{what}.")
    return (f"the {name} attribution is not finite (NaN or Inf) although the model's output at "
            "x is: a rule divided by zero or overflowed (for SmoothGrad, a noisy copy may leave "
            "the model's domain). Please report it with the model.")


def _in_trace(tree) -> bool:
    if _trace_state_clean is not None:
        return not _trace_state_clean()
    return any(isinstance(leaf, jax.core.Tracer)  # pragma: no cover
               for leaf in jax.tree_util.tree_leaves(tree))


def _make_explain(apply_fn: Callable, method: Method, precision: Optional[str] = None) -> Callable:
    # (data names passed at call time, resolved precision) -> (top-level jit, nested jit): a
    # precision never reuses another's program (jax's own jit cache keys on it too)
    programs: dict = {}
    warned = False  # whether this function has issued its CompletenessWarning

    def nested_for(names: frozenset, resolved: str, checked: bool):
        if ("nested", names, resolved, checked) not in programs:
            static = _with_placeholders(method, names)
            mode = "checked" if checked else "unchecked"

            def nested(params, x, target, key, data):
                return _program(apply_fn, static, mode, params, x, target, key, data)

            programs["nested", names, resolved, checked] = jax.jit(nested)
        return programs["nested", names, resolved, checked]

    def top_level_for(names: frozenset, resolved: str):
        # Compiler options apply to a top-level program only; inside a user's jit/grad/vmap
        # the outer program's options hold.
        if ("top", names, resolved) not in programs:
            program = functools.partial(_program, apply_fn, _with_placeholders(method, names),
                                        False)
            programs["top", names, resolved] = jax.jit(program,
                                                       compiler_options=backward_options())
        return programs["top", names, resolved]

    def fn(params, x, target=None, key=None, **data):
        nonlocal warned
        _check_x(x)
        target = _check_target(target, x.shape[0])
        key = _check_key(key) if method.needs_key else None
        if data:
            data = _check_data(method, data)
        resolved = _precision.resolve(precision)  # None: the caller's matmul precision, now
        names = frozenset(data)
        with jax.default_matmul_precision(_precision.matmul_precision(resolved)):
            if _in_trace((params, x, target, key, data)):
                nested = nested_for(names, resolved, _CHECKS_IN_TRACES.get())
                return nested(params, x, target, key, data)
            top_level = top_level_for(names, resolved)
            relevance, status = top_level(params, x, target, key, data)
        status = int(np.asarray(status))  # waits for the program, whose result is read next anyway
        if status & ~_INCOMPLETE_BIT:
            _raise(status, apply_fn, method, params, x, target, data, relevance)
        if status and not warned:  # once per explained function: a loop would repeat it
            warned = True
            _warn_incomplete(apply_fn, method, params, x, target, data, relevance)
        return relevance

    return fn


_explain_cached = functools.lru_cache(maxsize=64)(_make_explain)


def _is_nnx(obj) -> bool:
    nnx = sys.modules.get("flax.nnx")  # an NNX model exists only if flax.nnx was imported
    return nnx is not None and isinstance(obj, nnx.Module)


@functools.lru_cache(maxsize=64)
def _nnx_apply(graphdef) -> Callable:
    """``(state, x) -> logits`` of the NNX models with this graph: one function per graphdef,
    so every model of the same structure shares its compiled programs."""
    from flax import nnx

    def apply(state, x):
        # fresh Variables (a tree_map rebuilds them) in the current trace: the module's __call__
        # may write to them (counters, caches) without touching the caller's state, and from
        # inside the engine's traces, which close over the state
        return nnx.merge(graphdef, jax.tree_util.tree_map(lambda a: a, state))(x)

    return apply


def _explain_nnx(model, method: Method, precision: Optional[str]) -> Callable:
    from flax import nnx

    graphdef = []  # the model's graph, found on the first call that passes its state

    def fn(params, x, target=None, key=None, **data):
        if params is None:  # the model as it is now (trained in between, say)
            graph, params = nnx.split(model)
        else:  # the state given, e.g. nnx.state(model): no traversal of the model per call
            if not graphdef:
                graphdef.append(nnx.graphdef(model))
            graph = graphdef[0]
        return explain(_nnx_apply(graph), method, precision)(params, x, target, key, **data)

    return fn


def explain(apply_fn: Callable, method: Method = Gradient(),
            precision: Optional[str] = None) -> Callable:
    """A jitted ``(params, x, target=None, key=None, **data) -> relevance`` for ``apply_fn`` and
    ``method``.

    ``apply_fn(params, x) -> logits`` must be pure (a Flax Linen ``model.apply``, an NNX model
    split into a function, or plain jax). An ``flax.nnx.Module`` may be passed as it is: then
    ``params=None`` takes the model's current state (``nnx.split`` on every call; the model is
    not changed, whatever its ``__call__`` writes) and any other ``params`` is used as that
    state (``nnx.state(model)``: faster in a loop, as the model is not traversed per call).

    It compiles once per input signature (the shapes and dtypes of params, x, target, key and
    data) and runs as one XLA program, the input checks included; ``jax.vmap``, ``jax.jit`` and
    ``jax.grad`` over it work. Compiled programs are cached per ``(apply_fn, method)``: pass the
    same function object each time. A fresh lambda (or a fresh ``functools.partial``) as
    ``apply_fn`` is a new function and compiles anew on every call.

    ``precision``: ``"float32"`` (float32-exact: XLA's ``HIGHEST`` on every convolution and
    product), ``"fast"`` (the backend's default: TF32 on recent NVIDIA GPUs) or ``"bfloat16"``;
    ``None`` (default) is the ``jax.default_matmul_precision`` active at call time if the caller
    set one, else ``"float32"``. See :mod:`jaxattr.precision`; on CPU all give the same numbers.

    ``data``: arrays the method takes as traced arguments, so that a new array reuses the
    compiled program: ``reference=`` for :class:`~jaxattr.DeepLIFT`, ``baseline=`` for
    :class:`~jaxattr.IntegratedGradients`. An array given in the method itself
    (``DeepLIFT(reference=array)``) is passed the same way.

    Value checks (NaN/Inf in x or the data, target out of range) run inside the program and
    raise ``ValueError`` when it returns. Inside the user's own ``jax.jit``/``grad``/``vmap`` a
    value cannot raise: there they are left out (so the user's program keeps jax's fast
    dispatch), unless traced within :func:`checks_in_traces`, which makes them
    ``checkify.debug_check`` s for ``jax.experimental.checkify.checkify(...,
    errors=checkify.user_checks)`` to raise.
    For fully asynchronous dispatch (no wait for the status word), call the function inside a
    ``jax.jit`` (with ``compiler_options=ja.xla.backward_options()`` for the
    same program).

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: jnp.tanh(x @ p["w"])
        >>> params = {"w": jnp.ones((3, 2))}
        >>> explain_fn = ja.explain(f, ja.GradientXInput())
        >>> explain_fn(params, jnp.ones((4, 3))).shape
        (4, 3)
        >>> dl = ja.explain(f, ja.DeepLIFT())
        >>> dl(params, jnp.ones((4, 3)), reference=jnp.zeros(3)).shape  # no recompile per reference
        (4, 3)
    """
    if not isinstance(method, Method):
        raise TypeError(f"method must be a jaxattr method (ja.Gradient(), ja.LRP(...), ...), got "
                        f"{type(method).__name__}")
    precision = _precision.check(precision)
    if _is_nnx(apply_fn):  # not cached: that would keep the model alive
        return _explain_nnx(apply_fn, method, precision)
    try:
        return _explain_with_data(apply_fn, method, precision)
    except TypeError as err:  # unhashable apply_fn: compile without the cache
        if "unhashable" not in str(err):
            raise
        return _explain_with_data.__wrapped__(apply_fn, method, precision)


@functools.lru_cache(maxsize=64)
def _explain_with_data(apply_fn: Callable, method: Method, precision: Optional[str]) -> Callable:
    """The cached program of ``method`` without its arrays, the arrays bound as call arguments."""
    static, defaults = _split_data(method)
    fn = _programs_of(apply_fn, static, precision)
    return functools.partial(fn, **defaults) if defaults else fn


def _programs_of(apply_fn: Callable, static: Method, precision: Optional[str]) -> Callable:
    try:
        return _explain_cached(apply_fn, static, precision)
    except TypeError as err:
        if "unhashable" not in str(err):
            raise
        return _make_explain(apply_fn, static, precision)


def attribute(apply_fn: Callable, params: Any, x: Array, target: Optional[Array] = None,
              method: Method = Gradient(), key: Optional[Array] = None,
              precision: Optional[str] = None) -> Array:
    """Attribution of ``apply_fn(params, x)[i, target[i]]`` to ``x``; same shape as ``x``.

    Args:
        apply_fn: pure ``(params, x) -> logits`` of shape (batch, classes), or an
            ``flax.nnx.Module`` (then ``params=None``; see :func:`explain`). Compiled programs
            are cached per function object: a fresh lambda per call compiles every time.
        params: the model's parameters (any pytree).
        x: floating-point inputs with a leading batch axis.
        target: int class per example, shape (batch,) or a scalar; ``None`` = predicted class.
        method: an attribution method, e.g. ``ja.LRP(ja.composites.epsilon_plus_flat())``. An
            array in it (``DeepLIFT(reference=array)``) is traced data: a new array does not
            recompile.
        key: PRNG key for stochastic methods (SmoothGrad); defaults to ``jax.random.key(0)``.
        precision: ``"float32"`` (exact), ``"fast"`` or ``"bfloat16"``; ``None`` = the active
            ``jax.default_matmul_precision`` if one is set, else ``"float32"`` (see
            :func:`explain` and :mod:`jaxattr.precision`).

    Raises:
        TypeError / ValueError: with what to change, for non-float or empty ``x``, NaN/Inf,
            a model that rejects ``x``, output not (batch, classes), bad ``target`` or ``key``,
            and any x-dependent primitive no rule covers (:class:`UnsupportedPrimitiveError`);
            a ``precision`` that is not one of the names.
    """
    precision = _precision.check(precision)
    if not isinstance(method, Method) or _is_nnx(apply_fn):
        return explain(apply_fn, method, precision)(params, x, target, key)
    # a new array in the method (DeepLIFT(reference=array)) is call data, not a new cache entry
    static, data = _split_data(method)
    return _programs_of(apply_fn, static, precision)(params, x, target, key, **data)
