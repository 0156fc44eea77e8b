"""Attribution methods: frozen dataclasses (hashable, so they are static ``jit`` arguments).

A method is a composite (which rule goes where), a seed for the output cotangent and a
post-processing of the input cotangent; path methods (Integrated Gradients, SmoothGrad) average
several backward passes, batched with ``vmap``. Seeds (DESIGN §3): the gradient family starts
from 1 on the target logit (as Captum does); the relevance family (LRP, Deep Taylor) starts from
the target logit's value, so conserved relevance sums to it; DeepLIFT contributions sum to the
target logit's difference from the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import composites as C
from .composites import Composite
from .engine.batch import check_batch_independent
from .engine.stopped import check_reference_exact
from .engine.rewrite import environment, run
from .engine.lenient import lenient_segments
from .engine.segment import UnsupportedPrimitiveError, segment
from .engine.trace import Lit, trace, trace_mode
from .rules.activation import Rescale
from .rules.deeplift import (MAXPOOL_MODES, DeepLIFTMax, PairedRef, RevealCancel, RevealCancelLinear,
                             SplitRef, reveal_cancel_ratios, split_delta)
from .rules.base import Rule
from .rules.lrp import AlphaBeta, ZBox
from .rules.pooling import WinnerTakeAll
from .rules.path import PathIntegral
from .rules.softmax import DeepLIFTSoftmax
from .rules.product import DeepLIFTNormalise, DeepLIFTProduct

Array = jax.Array

#: What every method does where its composite says nothing: max pools route to the winner
#: (the gradient, computed fast; see :mod:`jaxattr.rules.pooling`).
DEFAULTS = Composite((("maxpool", WinnerTakeAll()),))


def backward(apply_fn: Callable, params: Any, x: Array, target: Optional[Array],
             composite: Composite, seed: str = "one", reference: Optional[Array] = None,
             reference_env: Optional[Callable] = None, strict: bool = True,
             body_reference: Optional[Callable] = None):
    """One rule-rewritten backward pass.

    Returns ``(cotangent at x, logits, target)``; ``target=None`` takes the argmax of the logits.
    ``seed``: ``"one"`` (one-hot on the target) or ``"logit"`` (one-hot times the logit).
    ``reference``: evaluate the reference alongside and hand it to the rules (DeepLIFT);
    ``reference_env(graph, segments, param_leaves) -> {var: value}`` builds that environment
    another way (a reference shared by the batch, RevealCancel's Δ⁺/Δ⁻ ratios);
    ``body_reference(body, segments, leaves, reference_leaves) -> {var: value}`` does it for a
    ``scan`` body at every step and for the ``cond`` branch taken (see
    :func:`~jaxattr.engine.rewrite.run`).
    ``strict``: segment every x-dependent operation (rule-based methods; raises
    :class:`UnsupportedPrimitiveError` on one no rule covers), or, when ``False``, cut out only
    ReLUs and max pools (:func:`~jaxattr.engine.lenient.lenient_segments`) and pass the true
    derivative everywhere else (the gradient family, Guided Backprop, DeconvNet): any
    differentiable function runs.
    A model that combines the examples of its batch (training mode) raises
    :class:`~jaxattr.engine.batch.BatchCouplingError` (:mod:`jaxattr.engine.batch`).
    """
    graph = trace(apply_fn, params, x, **trace_mode(strict, bool(composite.layer_map)))
    # a lenient trace keeps loops opaque: the check looks inside them on a full trace
    opaque = not strict and any(n.prim in ("scan", "cond") and not n.bodies for n in graph.nodes)
    check_batch_independent(trace(apply_fn, params, x) if opaque else graph)
    segments = _segments(graph, strict)
    assignment = (composite + DEFAULTS).assign(segments)
    _require_product_rules(segments, assignment)
    p_leaves = jax.tree_util.tree_leaves(params)
    body_ref = None
    if body_reference is not None:
        body_ref = lambda body, leaves, ref_leaves: body_reference(body, segments, leaves, ref_leaves)
    ref_env = None
    if reference_env is not None:
        ref_env = reference_env(graph, segments, p_leaves)
    elif reference is not None:
        ref_env = environment(graph, p_leaves + [reference])

    def f(x_):
        outs = run(graph, assignment, p_leaves + [x_], ref_env, body_ref)
        return jax.tree_util.tree_unflatten(graph.out_tree, outs)

    logits, vjp = jax.vjp(f, x)
    if target is None:
        target = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
    onehot = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
    cot = onehot * logits if seed == "logit" else onehot
    (grad,) = vjp(cot)
    return grad, logits, target


class CompletenessWarning(UserWarning):
    """Integrated Gradients' attributions miss ``f_t(x) − f_t(x₀)`` by more than the method's
    ``completeness_warning`` (issued once per explained function)."""


class Explained(NamedTuple):
    """What :meth:`Method.compute` returns."""

    relevance: Array  #: the attribution, x's shape
    score: Array  #: the target's logit at x, per example
    #: the relative completeness gap per example (:func:`completeness_gap`), where the method
    #: checks one (Integrated Gradients, DeepLIFT)
    gap: Optional[Array] = None


def completeness_gap(relevance: Array, score: Array, base_score: Array) -> Array:
    """``|Σ R − (f_t(x) − f_t(x₀))|`` per example, relative to ``|f_t(x) − f_t(x₀)|`` (at
    least 1 % of the larger ``|f_t|``, so that an output that hardly changes is not flagged for
    a rounding-sized gap)."""
    delta = score - base_score
    total = relevance.reshape(relevance.shape[0], -1).sum(1)
    scale = jnp.maximum(jnp.abs(delta), 0.01 * jnp.maximum(jnp.abs(score), jnp.abs(base_score)))
    return jnp.abs(total - delta) / jnp.maximum(scale, jnp.finfo(relevance.dtype).tiny)


def target_score(logits: Array, target: Array) -> Array:
    """The target's logit per example, ``logits[i, target[i]]`` (no gradient flows through it)."""
    target = jnp.broadcast_to(jnp.asarray(target), logits.shape[:1])
    logits = jax.lax.stop_gradient(logits)
    return jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]


def _require_product_rules(segments, assignment) -> None:
    """A product of two x-dependent tensors or a softmax must have a rule: its gradient, fed
    relevance or multipliers, returns ``R·x₂`` (not relevance; and no summation to delta)."""
    for seg in segments:
        if seg.kind in ("bilinear", "normalise", "softmax") and seg not in assignment:
            where = f"at module path '{seg.name}'" if seg.name else "(no module path)"
            raise UnsupportedPrimitiveError(
                f"the {seg.kind} segment {where} has no rule in this composite. Map the segment "
                f"kind '{seg.kind}' to a rule (for LRP, as the presets do: ja.rules.Uniform() on "
                "'bilinear', ja.rules.HoldScale() on 'normalise', ja.rules.SoftmaxTaylor() on "
                "'softmax'; ja.DeepLIFT uses ja.rules.DeepLIFTProduct() on products, "
                "ja.rules.DeepLIFTNormalise() on normalisations and ja.rules.DeepLIFTSoftmax() "
                "on softmaxes). "
                f"{works_on_any_model()}")


def _segments(graph, strict: bool) -> list:
    """The segments rules attach to (see :func:`backward`); a strict segmentation's
    :class:`UnsupportedPrimitiveError` also names the methods that work on any model."""
    if not strict:
        return lenient_segments(graph)
    try:
        return segment(graph)
    except UnsupportedPrimitiveError as err:
        raise UnsupportedPrimitiveError(f"{err} {works_on_any_model()}") from None


def works_on_any_model() -> str:
    """A sentence naming the methods that need no segment rules (``strict = False``)."""
    names = [f"ja.{cls.__name__}()" for cls in _all_methods() if not cls.strict]
    return ("These methods need no rule there and work on this model (any differentiable "
            f"function): {', '.join(names)}.")


def _all_methods() -> list:
    seen, todo = [], [Method]
    while todo:
        cls = todo.pop(0)
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return [c for c in seen if c.__module__ == __name__ and c is not Method]


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """Base class. Subclasses set :attr:`seed`, :meth:`composite` and/or override :meth:`compute`.

    :attr:`strict` says how the model is segmented (see :func:`backward`): ``True`` (the
    default, rule-based methods) classifies every x-dependent operation and refuses one no
    rule covers; ``False`` (the gradient family, Guided Backprop, DeconvNet) runs on any
    differentiable function and changes at most the derivative of ReLUs."""

    seed: ClassVar[str] = "one"
    needs_key: ClassVar[bool] = False
    #: fields whose array values ``ja.explain`` passes to the program as traced arguments (and
    #: accepts as keyword arguments at call time), so that a new array does not recompile
    data_fields: ClassVar[tuple] = ()
    strict: ClassVar[bool] = True
    #: whether the attribution sums to ``f_t(x) − f_t(x₀)`` exactly (DeepLIFT): a completeness
    #: gap (:attr:`Explained.gap`) is then an error, else (Integrated Gradients) a warning
    exact: ClassVar[bool] = False

    def _key(self):
        static = lambda v: ("array", id(v)) if isinstance(v, (np.ndarray, jax.Array)) else v
        return (type(self),) + tuple(static(getattr(self, f.name)) for f in dataclasses.fields(self))

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def composite(self) -> Composite:
        return Composite()

    def compute(self, apply_fn, params, x, target, key) -> Explained:
        """The attribution and the target's logit at ``x`` per example (``ja.explain`` refuses
        a non-finite one: a finite gradient of a NaN output, such as ``log`` of a negative
        number's, is no attribution)."""
        relevance, logits, target = backward(apply_fn, params, x, target, self.composite(),
                                             self.seed, strict=self.strict)
        return Explained(relevance, target_score(logits, target))


@dataclasses.dataclass(frozen=True, eq=False)
class Gradient(Method):
    """Vanilla gradient ∂f_t/∂x (Simonyan et al. 2014), signed (Captum's Saliency takes ``abs``).
    Equals ``jax.grad`` of the target logit on any differentiable ``apply_fn``."""

    strict: ClassVar[bool] = False


@dataclasses.dataclass(frozen=True, eq=False)
class GradientXInput(Method):
    """Gradient × input, ``x ⊙ ∂f_t/∂x`` (Shrikumar et al. 2016); equals LRP-0 on ReLU nets."""

    strict: ClassVar[bool] = False

    def compute(self, apply_fn, params, x, target, key):
        grad, score, _ = super().compute(apply_fn, params, x, target, key)
        return Explained(x * grad, score)


SEEDS = ("one", "logit")


def _check_seed(method, seed):
    if seed not in SEEDS:
        raise ValueError(f"{type(method).__name__} seed must be one of {SEEDS}, got {seed!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class DeconvNet(Method):
    """DeconvNet (Zeiler & Fergus 2014): through every ReLU the backward signal is ``relu(g)``,
    whatever the forward input's sign; every other operation (dense/conv layers, max pools, and
    anything else: attention, normalisation, control flow) passes its true derivative, so it runs
    on any differentiable model (on a network without ReLUs it is the gradient).

    ``seed``: the output cotangent. ``"one"`` (default, like the gradient and Captum): one-hot on
    the target. ``"logit"``: one-hot times the target logit ``f_t(x)``, iNNvestigate's convention
    (its DeconvNet starts from the output *value*): for ``f_t(x) > 0`` that scales each example's
    map by ``f_t(x)``; for ``f_t(x) < 0`` the ReLUs see the negated signal and the map differs."""

    seed: str = "one"
    strict: ClassVar[bool] = False

    def __post_init__(self):
        _check_seed(self, self.seed)

    def composite(self):
        return C.deconvnet()


@dataclasses.dataclass(frozen=True, eq=False)
class GuidedBackprop(Method):
    """Guided backpropagation (Springenberg et al. 2015): through every ReLU the backward signal
    is ``relu(g) ⊙ 1{x > 0}`` (the forward mask and a positive signal); every other operation
    passes its true derivative, so it runs on any differentiable model.

    ``seed``: ``"one"`` (default, like the gradient and Captum) or ``"logit"``, iNNvestigate's
    convention (one-hot times ``f_t(x)``: a positive per-example scale where ``f_t(x) > 0``, a
    different map where ``f_t(x) < 0``); see :class:`DeconvNet`."""

    seed: str = "one"
    strict: ClassVar[bool] = False

    def __post_init__(self):
        _check_seed(self, self.seed)

    def composite(self):
        return C.guided_backprop()


def _chunked_vmap(fn, xs, chunk: Optional[int]):
    """``vmap(fn)(xs)``, ``chunk`` leading entries at a time (bounded memory), unrolled in the
    trace: on XLA CPU a backward pass inside a ``lax.map``/``scan`` body ran ~4× slower than the
    same pass at top level (measured against Captum's IG, see benchmarks/peers.py)."""
    n = xs.shape[0]
    chunk = n if not chunk else min(chunk, n)
    parts = [jax.vmap(fn)(xs[i:i + chunk]) for i in range(0, n, chunk)]
    return jnp.concatenate(parts) if len(parts) > 1 else parts[0]


def _check_chunk(method, chunk, auto: bool = False) -> None:
    if auto and chunk == "auto":
        return
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        allowed = "'auto' (per backend), None (all at once)" if auto else "None (all at once)"
        raise ValueError(f"{type(method).__name__} chunk must be {allowed} or an int >= 1, "
                         f"got {chunk!r}")


#: ``IntegratedGradients(chunk="auto")``: images per vmapped gradient, per backend platform
#: (``jax.default_backend()``); the chunk is ``max(1, images // batch)`` quadrature nodes.
#: Measured like Captum's ``internal_batch_size`` (``benchmarks/peers.py --ig-chunks 1 2 4 8``,
#: every chunk in the same interleaved rounds, paper CNN, 32 nodes): on the 2-core CPU the
#: gradient of one batch at a time is the fastest — CHUNK_TABLE_NOTE.
#: Backends not listed keep 8 nodes per chunk (the earlier fixed default, with which IG-32 ran
#: 8.5× Captum's on one H200 at batch 1024; not re-tuned since: no accelerator was available).
IG_CHUNK_IMAGES = {"cpu": 128}
IG_CHUNK_NODES_ELSEWHERE = 8


def ig_chunk(steps: int, batch: int, backend: Optional[str] = None) -> int:
    """The number of quadrature nodes per vmapped gradient that ``chunk="auto"`` takes for a
    batch of ``batch`` on ``backend`` (``None``: ``jax.default_backend()``), at most ``steps``."""
    backend = jax.default_backend() if backend is None else backend
    images = IG_CHUNK_IMAGES.get(backend)
    nodes = IG_CHUNK_NODES_ELSEWHERE if images is None else max(1, images // max(batch, 1))
    return min(nodes, steps)


def _path_nodes(steps: int, rule: str):
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_trapezoid":
        nodes = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1)) if steps > 1 else np.ones(1)
        weights[[0, -1]] /= 2
        return nodes, weights
    if rule in ("riemann_left", "riemann_right", "riemann_middle"):
        offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
        return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"unknown integration rule {rule!r}: use 'gausslegendre', 'riemann_trapezoid', "
                     "'riemann_left', 'riemann_right' or 'riemann_middle'")


def _as_reference(reference, x):
    if callable(reference):
        ref = reference(x)
    else:
        ref = reference
    ref = jnp.asarray(ref, dtype=x.dtype)
    try:
        return jnp.broadcast_to(ref, x.shape)
    except ValueError:
        raise ValueError(f"reference of shape {ref.shape} does not broadcast to x's shape {x.shape}; "
                         "pass a scalar, an array like x (or one example's shape), or a callable x -> "
                         "reference") from None


@dataclasses.dataclass(frozen=True, eq=False)
class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan et al. 2017):
    ``(x − x₀) ⊙ ∫₀¹ ∂f_t/∂x (x₀ + α(x − x₀)) dα``, by ``steps`` quadrature nodes (Gauss–Legendre
    by default, as Captum), ``chunk`` nodes at a time under ``vmap`` to bound memory. The target
    is fixed from ``x``'s own logits.

    ``chunk``: quadrature nodes per vmapped gradient (Captum's ``internal_batch_size`` is
    ``chunk × batch``); ``None`` takes all at once; ``"auto"`` (default) picks per backend from
    :data:`IG_CHUNK_IMAGES` (:func:`ig_chunk`): on CPU one batch-sized gradient at a time for
    batches of 128 and more (measured fastest), more nodes per chunk for smaller batches; on
    other backends 8 nodes.

    **Completeness** (``Σ R = f_t(x) − f_t(x₀)``) holds up to the quadrature's error.
    ``ja.explain``/``ja.attribute`` check it in the same program (one more forward pass, at
    the baseline) and warn (:class:`CompletenessWarning`, naming the examples and their gaps,
    once per explained function) where it misses by more than ``completeness_warning``
    (default 0.1) of ``|f_t(x) − f_t(x₀)|`` (at least 1 % of the larger ``|f_t|``); ``None``
    turns the check off. It converges slowly where the
    integrand is nearly singular: a LayerNorm whose input is constant at the baseline (the zero
    baseline after bias-free layers, as in ConvNeXt or an MLP-Mixer) normalises ``α·h`` to its
    full size within ``α ≈ √ε/σ(h)`` of the baseline (1e-3 for ε = 1e-6), so nearly all of the
    change happens before the first node. On the test zoo (float64, zero baseline) the relative
    completeness error was ≤ 3e-7 on the ViT, BERT, GPT and LSTM, 1e-2 on the ResNet, and
    0.17–1.6 on ConvNeXt and the MLP-Mixer at 32 *and* at 256 nodes (1e-15 from the baseline
    0.5). A baseline whose normalised activations are not degenerate (a constant ≠ 0, the data
    mean) avoids it, and :class:`DeepLIFT` is exact there.

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: (x ** 2) @ p                        # one logit: x1² + x2²
        >>> R = ja.attribute(f, jnp.ones((2, 1)), jnp.array([[1.0, 2.0]]),
        ...                  method=ja.IntegratedGradients(steps=8))
        >>> [round(r, 4) for r in R[0].tolist()]               # exact: x ⊙ ∫ 2αx dα = x²
        [1.0, 4.0]
    """

    steps: int = 32
    baseline: Union[float, tuple] = 0.0
    rule: str = "gausslegendre"
    chunk: Union[int, None, str] = "auto"
    completeness_warning: Optional[float] = 0.1
    data_fields: ClassVar[tuple] = ("baseline",)
    strict: ClassVar[bool] = False

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"IntegratedGradients steps must be >= 1, got {self.steps}")
        if self.completeness_warning is not None and not self.completeness_warning > 0:
            raise ValueError("IntegratedGradients completeness_warning must be a positive "
                             f"fraction or None, got {self.completeness_warning}")
        _path_nodes(self.steps, self.rule)
        _check_chunk(self, self.chunk, auto=True)

    def reference_points(self, x) -> list:
        """The baseline the attributions are measured from."""
        return [_as_reference(self.baseline, x)]

    def resolved_chunk(self, batch: int, backend: Optional[str] = None) -> Optional[int]:
        """The chunk this method runs with on a batch of ``batch`` (``"auto"`` resolved)."""
        return ig_chunk(self.steps, batch, backend) if self.chunk == "auto" else self.chunk

    def compute(self, apply_fn, params, x, target, key):
        x0 = _as_reference(self.baseline, x)
        logits = apply_fn(params, x)
        if target is None:
            target = jnp.argmax(logits, axis=-1)
        alphas, weights = (jnp.asarray(v, x.dtype) for v in _path_nodes(self.steps, self.rule))
        grad = lambda a: backward(apply_fn, params, x0 + a * (x - x0), target, Composite(),
                                  strict=False)[0]
        grads = _chunked_vmap(grad, alphas, self.resolved_chunk(x.shape[0]))
        relevance = (x - x0) * jnp.tensordot(weights, grads, axes=1)
        score = target_score(logits, target)
        if self.completeness_warning is None:
            return Explained(relevance, score)
        base = target_score(apply_fn(params, x0), target)  # one forward, beside `steps` gradients
        return Explained(relevance, score, completeness_gap(relevance, score, base))


@dataclasses.dataclass(frozen=True, eq=False)
class SmoothGrad(Method):
    """SmoothGrad (Smilkov et al. 2017): mean gradient over ``samples`` copies of x with Gaussian
    noise of standard deviation ``sigma · (max(x) − min(x))`` per example (the paper's noise
    level); needs ``key``. The target is fixed from ``x``'s own logits.

    Sample ``s`` of an example draws its noise from ``key``'s ``s``-th split folded with a 32-bit
    fingerprint of the example's own values (:func:`example_fingerprints`), so an example gets
    the same noise, and the same explanation, in any batch (batch-exact, unlike Captum's
    NoiseTunnel, whose noise depends on the example's place in the batch)."""

    samples: int = 32
    sigma: float = 0.1
    chunk: Optional[int] = 8
    needs_key: ClassVar[bool] = True
    strict: ClassVar[bool] = False

    def __post_init__(self):
        if self.samples < 1 or self.sigma < 0:
            raise ValueError(f"SmoothGrad needs samples >= 1 and sigma >= 0, got samples={self.samples}, "
                             f"sigma={self.sigma}")
        _check_chunk(self, self.chunk)

    def compute(self, apply_fn, params, x, target, key):
        logits = apply_fn(params, x)
        if target is None:
            target = jnp.argmax(logits, axis=-1)
        axes = tuple(range(1, x.ndim))
        scale = self.sigma * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
        keys = jax.random.split(key, self.samples)
        prints = example_fingerprints(x)

        def noisy(k):
            draw = lambda p: jax.random.normal(jax.random.fold_in(k, p), x.shape[1:], x.dtype)
            return x + scale * jax.vmap(draw)(prints)

        grad = lambda k: backward(apply_fn, params, noisy(k), target, Composite(), strict=False)[0]
        relevance = _chunked_vmap(grad, keys, self.chunk).mean(0)
        return Explained(relevance, target_score(logits, target))


def example_fingerprints(x: jax.Array) -> jax.Array:
    """A ``uint32`` per example (leading axis) that depends only on the example's values: the
    bits of its entries, each times a distinct odd constant, summed modulo 2³². Equal examples
    get equal fingerprints in any batch; different ones rarely collide (and a collision only
    makes two examples share their noise)."""
    flat = x.reshape(x.shape[0], -1)
    width = jnp.dtype(x.dtype).itemsize
    bits = jax.lax.bitcast_convert_type(flat, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32,
                                               8: jnp.uint64}[width])
    if width == 8:  # fold the high word in
        bits = (bits ^ (bits >> 32)) & 0xFFFFFFFF
    bits = bits.astype(jnp.uint32)
    odd = (jnp.arange(flat.shape[1], dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)) \
        * jnp.uint32(0x9E3779B1)
    return jnp.sum(bits * odd, axis=1, dtype=jnp.uint32)


@dataclasses.dataclass(frozen=True, eq=False)
class LRP(Method):
    """Layer-wise relevance propagation (Bach et al. 2015) with a rule on every dense/conv layer
    or a :class:`~jaxattr.composites.Composite`. ``LRP(rules.Epsilon(0.0))`` is LRP-0.

    Rules apply inside ``lax.scan`` bodies (recurrent cells: every step of the rolled loop
    propagates relevance with the body's rules) and ``lax.cond``/``switch`` branches (the taken
    branch's); a user's ``custom_vjp``/``custom_jvp`` layer that is not elementwise is seen
    through (its primal body gets the rules). For LSTMs and GRUs,
    :func:`ja.composites.lstm_signal_take_all <jaxattr.composites.lstm_signal_take_all>` is Arras
    et al.'s rule (gates get no relevance); the presets split gated products uniformly."""

    rule: Union[Rule, Composite] = dataclasses.field(default_factory=C.epsilon_plus)
    seed: ClassVar[str] = "logit"

    def __post_init__(self):
        if not isinstance(self.rule, (Rule, Composite)):
            raise TypeError(f"LRP takes a rule (ja.rules.*) or a composite (ja.composites.*), got "
                            f"{type(self.rule).__name__}")

    def composite(self):
        return self.rule if isinstance(self.rule, Composite) else C.lrp(self.rule)


@dataclasses.dataclass(frozen=True, eq=False)
class DeepTaylor(Method):
    """Deep Taylor decomposition (Montavon et al. 2017) with iNNvestigate 1.0.8's semantics:
    α1β0 on every dense/conv layer, the whole bias in the denominator, ``0/0 = 0``
    (``ignore_bias=True`` gives iNNvestigate 2.x's bias-free rule). With ``low``/``high`` it is
    ``BoundedDeepTaylor``: the first layer gets z^B(low, high).

    .. math::

        R_i = \\sum_j \\frac{(x_i w_{ij})^+}{\\sum_k (x_k w_{kj})^+ + b_j} R_j, \\qquad
        R_{\\text{out}} = \\max(0, f_t(x)) \\text{ on the target}

    The output relevance is the target logit through a ReLU (``output_relu=True``, default), as
    iNNvestigate, which wraps the model's outputs in a ReLU before analysing them
    (``DeepTaylor._prepare_model`` in ``innvestigate/analyzer/deeptaylor.py``, every version):
    an example whose target logit is ≤ 0 gets an all-zero map. Deep Taylor explains the
    evidence *for* a class; seeding a negative logit would flip every relevance's sign (all
    R ≤ 0 under α1β0), so the most positive evidence would rank last. ``output_relu=False``
    seeds with the raw logit (jaxattr's earlier default): the same map where ``f_t(x) > 0``.
    Checked against iNNvestigate 2.1.2 on a Keras twin (positive target logits):
    ``DeepTaylor(ignore_bias=True)`` equals its ``deep_taylor`` and ``DeepTaylor()`` its
    ``lrp.alpha_1_beta_0`` to ~4e-7.

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: x @ p                      # one logit: x1 − 2·x2
        >>> p, x = jnp.array([[1.0], [-2.0]]), jnp.array([[1.0, 2.0]])   # f = −3
        >>> ja.attribute(f, p, x, method=ja.DeepTaylor()).tolist()
        [[0.0, 0.0]]
        >>> ja.attribute(f, p, x, method=ja.DeepTaylor(output_relu=False)).tolist()  # x1: evidence for, ranked last
        [[-3.0, 0.0]]
    """

    low: Optional[Any] = None
    high: Optional[Any] = None
    ignore_bias: bool = False
    output_relu: bool = True
    seed: ClassVar[str] = "logit"

    def __post_init__(self):
        if (self.low is None) != (self.high is None):
            raise ValueError("DeepTaylor needs both low and high (bounded) or neither")

    def composite(self):
        rule = AlphaBeta(1.0, 0.0, bias="none" if self.ignore_bias else "whole", epsilon=0.0)
        comp = C.lrp(rule)
        if self.low is not None:
            comp = Composite((("first", ZBox(C._bound(self.low), C._bound(self.high), epsilon=0.0)),)) + comp
        return comp

    def compute(self, apply_fn, params, x, target, key):
        relevance, score, _ = super().compute(apply_fn, params, x, target, key)
        if not self.output_relu:
            return Explained(relevance, score)
        # every rule is linear in the incoming relevance, so seeding relu(f_t) is seeding f_t
        # and zeroing the examples whose f_t ≤ 0
        keep = (score > 0).reshape(score.shape + (1,) * (relevance.ndim - 1))
        return Explained(jnp.where(keep, relevance, jnp.zeros_like(relevance)), score)


@dataclasses.dataclass(frozen=True, eq=False)
class DeepLIFT(Method):
    """DeepLIFT (Shrikumar et al. 2016/2017): contributions ``C = (x − x₀) ⊙ m`` whose sum is the
    target logit's difference from the reference, ``Σ C = f_t(x) − f_t(x₀)`` (summation to delta).

    The multipliers ``m`` follow the chain rule (paper eq. 4) with

    * linear layers (dense, conv, bias, batch norm, sums, average pools): ``m = W``, their gradient;
    * every elementwise non-linearity (ReLU, PReLU, sigmoid, tanh, softplus, GELU, … — the engine's
      activation regions, multi-op ones like PReLU included): Rescale,
      ``m = (f(z) − f(z₀)) / (z − z₀)``, the gradient where ``|z − z₀| < 1e-7``
      (:class:`~jaxattr.rules.Rescale`);
    * max pools and ``max``/``min`` of tensors (:class:`~jaxattr.rules.DeepLIFTMax`): ``maxpool=
      "interpolate"`` (default, **jaxattr's own rule**, not the authors') mixes the routings at
      x and x₀, ``m = λ g + (1 − λ) g₀`` with ``λ = (Δy − g₀·Δx) / (g·Δx − g₀·Δx)``, so that the
      pool sums to delta exactly, per example and for overlapping windows, with every
      multiplier in [0, 1]. The DeepLIFT authors' modes (kundajelab/deeplift
      ``MaxPoolDeepLiftMode``) by their names: ``"gradient"`` (their default; the routing at x,
      not summation-exact where the winner changes) and ``"scaled_gradient"`` (``Δy`` routed to
      x's winner and divided by its ``Δx``, eq. 11 of the 2016 paper: sums to delta, but
      unbounded — even negative — where the winner's ``Δx`` is small or of the other sign);
    * products of two x-dependent tensors (gates, GLUs, attention's ``QKᵀ`` and ``AV``;
      :class:`~jaxattr.rules.DeepLIFTProduct`): the paper's rule (2016, §2.3.5),
      ``m_{x₁} = ½(x₂ + x₂⁰)``, ``m_{x₂} = ½(x₁ + x₁⁰)``, summed over the contracted axis of a
      matrix product; exact for summation to delta;
    * LayerNorm / RMSNorm, a product of the centred input ``s`` and its scale ``g`` whose parts
      (square, mean, rsqrt) get Rescale: ``normalise="scale_first"`` (default,
      :class:`~jaxattr.rules.DeepLIFTNormalise`) splits ``Δy = g ⊙ Δs + s₀ ⊙ Δg`` (the scale
      moved first, at the reference's signal), exact and well-conditioned where the reference's
      scale is ``rsqrt(ε)`` (a zero reference after bias-free layers: ConvNeXt, MLP-Mixer);
      ``normalise="symmetric"``: §2.3.5's product rule, exact too, but there its
      contributions run to 1e7–1e8 times the logit's change and in float32 no longer sum to it;
    * a softmax inside the model (attention): DeepLIFT's own rules on its primitives
      (``softmax="rules"``, default; :class:`~jaxattr.rules.DeepLIFTSoftmax`): Rescale on
      ``exp``, the exact secant ``−1/(S·S₀)`` of ``1/S`` and the product rule on ``e · (1/S)``,
      exact for summation to delta at about one softmax's cost. ``softmax="path"``
      (:class:`~jaxattr.rules.PathIntegral`): the softmax's Jacobian averaged along the
      straight path from the reference, by 16-point Gauss–Legendre quadrature (summation to
      delta up to the quadrature error, below 1e-12 relative on the test transformers; 16
      evaluations of the softmax); also where the rules do not apply (a mask between ``exp``
      and the sum, a softmax written as one custom-derivative call).

    The reference is evaluated alongside x, so every rule sees its inputs' reference values. A
    reference shared by the whole batch (a scalar, one example) is evaluated on one example and
    broadcast (when the model keeps the batch as the leading axis of every x-dependent value):
    on the paper CNN (batch 64, CPU) DeepLIFT-Rescale then costs ≈ 1.15× the plain input
    gradient, ≈ 1.7× with a different reference per example; RevealCancel ≈ 4–5×.
    **Control flow.** Inside a ``jax.lax.scan`` (Flax's ``nn.RNN``, ``fori_loop`` with static
    bounds) the reference runs through the same loop, step by step (the rolled loop carries both),
    so every rule in the body sees its inputs' reference values at that step and summation to
    delta holds through the loop; RevealCancel pairs activations with their layers inside the body
    too. A reference shared by the batch is then evaluated on the whole batch (a scan's stacked
    values have time, not the batch, as their leading axis). Through ``lax.cond``/``switch`` the
    reference is evaluated in the branch the *input* takes: summation to delta holds when the
    reference takes the same branch (a branch index that does not depend on x always does);
    otherwise the contributions are not a decomposition of ``f_t(x) − f_t(x₀)``. A ``while`` loop
    whose trip count depends on x raises :class:`~jaxattr.engine.UnsupportedPrimitiveError`.
    Explain logits, not probabilities (paper §2.4–2.5; the library's default): to make
    contributions to a softmax meaningful, mean-normalise the last layer first
    (:func:`jaxattr.weight_norm.normalize_softmax_weights`); for one-hot inputs use
    :func:`jaxattr.weight_norm.normalize_one_hot_weights` (paper eq. 22) with the zero reference.

    Args:
        reference: the reference input x₀: a scalar, an array broadcastable to x's shape (one
            example's shape, x's shape, a per-channel vector, …), or a callable ``x -> x₀``.
            With ``average_references=True``: a stack ``(K, …)`` of K references, each
            broadcastable to x's shape (or a callable returning one).
        rule: ``"rescale"`` or ``"reveal_cancel"`` (paper 2017 §3.5.3: on every activation fed
            directly by a dense/conv layer, Δ⁺ and Δ⁻ of its input are credited separately; other
            activations keep Rescale; see :mod:`jaxattr.rules.deeplift`). RevealCancel evaluates x
            once more and costs a few more transposed products per paired layer.
        maxpool: ``"interpolate"``, ``"gradient"`` or ``"scaled_gradient"`` (see above).
        softmax: ``"rules"`` or ``"path"`` (see above).
        normalise: ``"scale_first"`` or ``"symmetric"`` (see above).
        average_references: average the contributions over the K stacked references (as
            DeepSHAP/DeepLiftShap do); then ``Σ C = f_t(x) − mean_k f_t(x₀ᵏ)``. The target is
            fixed from x's own logits when not given.
        delta_tolerance: ``ja.explain``/``ja.attribute`` check summation to delta in the same
            program (the output at the reference comes with its evaluation) and raise where
            ``|Σ C − Δf_t|`` exceeds this fraction of ``|Δf_t|`` (at least 1 % of the larger
            ``|f_t|``): a gap means the contributions are wrong — float32 cancellation
            (``normalise="symmetric"`` at a degenerate LayerNorm: 0.75–2.6 on the zoo's
            ConvNeXt and Mixer) or a part of the model no rule covers exactly (the rules sum to
            delta within 1e-5 in float32 on every zoo model). ``None``: unchecked. Not checked
            with the authors' max-pool modes (``"gradient"``, ``"scaled_gradient"``: not exact
            where the winner changes or its ``Δx`` is 0) or a lower matmul precision.

    Raises:
        ValueError: unknown ``rule``/``maxpool``; a reference that does not broadcast to x's shape,
            or (when concrete) contains NaN/Inf.

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: jnp.maximum(x @ p - 1.0, 0.0)  # one logit: relu(x1 + x2 - 1)
        >>> x = jnp.array([[1.0, 2.0]])
        >>> C = ja.attribute(f, jnp.ones((2, 1)), x, method=ja.DeepLIFT(reference=0.0))
        >>> [round(c, 4) for c in C[0].tolist()]  # Δy = 2 − 0 split in proportion to Δz = 1 + 2
        [0.6667, 1.3333]
        >>> C_avg = ja.attribute(f, jnp.ones((2, 1)), x,
        ...                      method=ja.DeepLIFT(jnp.array([0.0, 1.0]), average_references=True))
    """

    reference: Any = 0.0
    rule: str = "rescale"
    maxpool: str = "interpolate"
    average_references: bool = False
    softmax: str = "rules"
    normalise: str = "scale_first"
    delta_tolerance: Optional[float] = 1e-3
    data_fields: ClassVar[tuple] = ("reference",)
    exact: ClassVar[bool] = True

    def __post_init__(self):
        if self.rule not in ("rescale", "reveal_cancel"):
            raise ValueError(f"DeepLIFT rule must be 'rescale' or 'reveal_cancel', got {self.rule!r}")
        if self.softmax not in ("path", "rules"):
            raise ValueError(f"DeepLIFT softmax must be 'path' or 'rules', got {self.softmax!r}")
        if self.normalise not in ("scale_first", "symmetric"):
            raise ValueError("DeepLIFT normalise must be 'scale_first' or 'symmetric', got "
                             f"{self.normalise!r}")
        if self.delta_tolerance is not None and not self.delta_tolerance > 0:
            raise ValueError("DeepLIFT delta_tolerance must be a positive fraction or None, got "
                             f"{self.delta_tolerance}")
        if self.maxpool not in MAXPOOL_MODES:
            raise ValueError(f"DeepLIFT maxpool must be one of {MAXPOOL_MODES}, got {self.maxpool!r}")
        ref = self.reference
        if callable(ref):
            return
        if isinstance(ref, (list, tuple)):
            ref = np.asarray(ref)
            object.__setattr__(self, "reference", ref)  # hashable (by identity), like an array
        if isinstance(ref, jax.core.Tracer):
            return
        try:
            arr = np.asarray(ref)
        except Exception:
            arr = None
        if arr is None or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"DeepLIFT reference must be a number, an array or a callable x -> x₀, "
                             f"got {type(ref).__name__}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("DeepLIFT reference contains NaN or Inf values; pass a finite reference")
        if self.average_references and arr.ndim == 0:
            raise ValueError("DeepLIFT(average_references=True) needs a stack of references with a "
                             "leading axis (K, ...), got a scalar")

    def composite(self):
        maxpool = ("maxpool", DeepLIFTMax(self.maxpool))
        normalise = DeepLIFTProduct() if self.normalise == "symmetric" else DeepLIFTNormalise()
        products = (("bilinear", DeepLIFTProduct()), ("normalise", normalise),
                    ("softmax", DeepLIFTSoftmax() if self.softmax == "rules" else PathIntegral()))
        if self.rule == "reveal_cancel":
            return Composite((("linear", RevealCancelLinear()), ("activation", RevealCancel()),
                              maxpool) + products)
        return Composite((("activation", Rescale()), maxpool) + products)

    def references(self, x) -> Array:
        """The reference(s) for ``x``: x's shape, or ``(K,) + x.shape`` with ``average_references``.

        Raises ``ValueError`` if the reference does not broadcast to x's shape or is not finite
        (checked when the reference is concrete: an array or scalar always, a callable's result
        only outside ``jit``)."""
        return self._resolve(x)[0]

    def _resolve(self, x):
        """``(references, shared)``: ``shared`` when every example has the same reference."""
        ref = self.reference(x) if callable(self.reference) else self.reference
        if not isinstance(ref, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(ref))):
            raise ValueError("DeepLIFT reference contains NaN or Inf values; pass a finite reference")
        ref = jnp.asarray(ref, dtype=x.dtype)
        shape = x.shape
        if self.average_references:
            if ref.ndim == 0 or ref.ndim > x.ndim + 1:
                raise ValueError(f"DeepLIFT(average_references=True) needs references of shape (K, "
                                 f"...) with each broadcastable to x's shape {x.shape}, got shape "
                                 f"{ref.shape}")
            rest = ref.shape[1:]
            ref = ref.reshape(ref.shape[:1] + (1,) * (x.ndim - len(rest)) + rest)
            shape = ref.shape[:1] + x.shape
            shared = ref.shape[1] == 1
        else:
            shared = ref.ndim < x.ndim or ref.shape[0] == 1
        try:
            ref = jnp.broadcast_to(ref, shape)
        except ValueError:
            hint = (" (a stack of references? pass average_references=True)"
                    if ref.ndim == x.ndim + 1 and not self.average_references else "")
            raise ValueError(f"DeepLIFT reference of shape {ref.shape} does not broadcast to x's "
                             f"shape {x.shape}{hint}; pass a scalar, an array like x (or one "
                             "example's shape), or a callable x -> reference") from None
        return ref, shared

    def compute(self, apply_fn, params, x, target, key):
        refs, shared = self._resolve(x)
        if not self.average_references:
            multipliers, score, base = self._multipliers(apply_fn, params, x, target, refs, shared)
            return self._explained((x - refs) * multipliers, score, base)
        logits = apply_fn(params, x)
        if target is None:
            target = jnp.argmax(logits, axis=-1)

        def one(ref):
            multipliers, _, base = self._multipliers(apply_fn, params, x, target, ref, shared)
            return (x - ref) * multipliers, base

        contributions, bases = jax.lax.map(one, refs)
        return self._explained(contributions.mean(0), target_score(logits, target), bases.mean(0))

    def _explained(self, contributions, score, base) -> Explained:
        """With the completeness gap checked by ``ja.explain`` (summation to delta is exact
        here, so a gap is an error), unless ``delta_tolerance`` is ``None`` or the max pools
        follow one of the DeepLIFT authors' modes (not exact where the winner changes, or
        where its ``Δx`` is 0)."""
        if self.delta_tolerance is None or self.maxpool != "interpolate":
            return Explained(contributions, score)
        return Explained(contributions, score, completeness_gap(contributions, score, base))

    def reference_points(self, x) -> list:
        """The references the contributions are measured from (one, or the K averaged)."""
        refs = self.references(x)
        return list(refs) if self.average_references else [refs]

    def _multipliers(self, apply_fn, params, x, target, ref, shared):
        """Multipliers of the target logit w.r.t. x for one reference ``ref`` (x's shape), and
        the target's logit at x and at ``ref``.

        The reference is evaluated alongside x (one plain forward pass); when it is the same for
        every example (``shared``) it is evaluated on one example and broadcast, if the graph
        keeps the batch as the leading axis of every x-dependent value."""
        at_ref = {}  # the model's output at the reference: free from its environment

        def reference_env(graph, segments, leaves):
            check_reference_exact(graph, segments, "DeepLIFT")
            env_ref = None
            if shared and x.shape[0] > 1:
                env_ref = self._shared_reference_env(apply_fn, params, graph, leaves, ref[:1])
            if env_ref is None:
                env_ref = environment(graph, leaves + [ref])
            at_ref["out"] = jax.tree_util.tree_unflatten(graph.out_tree, [
                a.value if isinstance(a, Lit) else env_ref[a] for a in graph.outvars])
            if self.rule == "reveal_cancel":
                env_x = environment(graph, leaves + [x])
                env_ref = self._reveal_cancel_references(graph, segments, env_x, env_ref)
            return env_ref

        def body_reference(body, segments, leaves, ref_leaves):
            # a scan body at one step, or the cond branch x takes: evaluated on that step's
            # inputs, so no batch-of-one shortcut here
            env_ref = environment(body, ref_leaves)
            if self.rule == "reveal_cancel":
                env_x = environment(body, leaves)
                env_ref = self._reveal_cancel_references(body, segments, env_x, env_ref)
            return env_ref

        multipliers, logits, target = backward(
            apply_fn, params, x, target, self.composite(), "one", reference_env=reference_env,
            body_reference=body_reference)
        base = target_score(jnp.broadcast_to(at_ref["out"], logits.shape), target)
        return multipliers, target_score(logits, target), base

    @staticmethod
    def _shared_reference_env(apply_fn, params, graph, leaves, ref1):
        """Every variable of ``graph`` at a reference shared by the whole batch, evaluated on a
        batch of one (``ref1``) and broadcast; ``None`` when the two traces do not line up node by
        node or an x-dependent value does not carry the batch as its leading axis (a model that
        reshapes or reduces over the batch), so the caller evaluates the full batch instead."""
        small = trace(apply_fn, params, ref1, **trace_mode(True, True))
        if len(small.nodes) != len(graph.nodes) or len(small.invars) != len(graph.invars):
            return None
        batch = graph.avals[graph.x_vars[0]].shape[0]
        pairs = list(zip(graph.invars, small.invars))
        for node, other in zip(graph.nodes, small.nodes):
            if node.prim != other.prim or len(node.outs) != len(other.outs):
                return None
            pairs.extend(zip(node.outs, other.outs))
        grow = {}
        for v, w in pairs:
            big, one = graph.avals[v].shape, small.avals[w].shape
            if big[:1] == (batch,) and one[:1] == (1,) and big[1:] == one[1:]:
                grow[v] = big
            elif big != one or v in graph.tainted:
                return None
        env1 = environment(small, leaves + [ref1])
        return {v: jnp.broadcast_to(env1[w], grow[v]) if v in grow else env1[w] for v, w in pairs}

    @staticmethod
    def _reveal_cancel_references(graph, segments, env_x, env_ref) -> dict:
        """DeepLIFT RevealCancel's reference environment: ``env_ref`` with every activation region
        that reads a dense/conv layer's output directly (and alone) marked :class:`PairedRef`, and that
        layer's input wrapped in a :class:`SplitRef` holding the region's ``(m⁺, m⁻)`` ratios
        (see :mod:`jaxattr.rules.deeplift`). Other activations keep Rescale."""
        from .engine.layer import make_view
        from .engine.trace import is_var

        users = graph.consumers()
        graph_outs = {a for a in graph.outvars if is_var(a)}
        linear_by_output = {s.output: s for s in segments if s.family == "linear"}
        env = dict(env_ref)
        for act in segments:
            if act.kind != "activation" or act.output not in env_x:  # another graph's segment
                continue
            v = act.inputs[0]
            lin = linear_by_output.get(v)
            inside = {id(n) for n in act.nodes}
            if lin is None or v in graph_outs or any(id(n) not in inside for n in users.get(v, ())):
                continue
            u = lin.inputs[0]
            lin_view = make_view(lin, [env_x[c] for c in lin.consts()])
            d_pos, d_neg = split_delta(lin_view, env_x[u] - env_ref[u], env_x[v] - env_ref[v])
            act_view = make_view(act, [env_x[c] for c in act.consts()])
            ratios = reveal_cancel_ratios(act_view.fn, env_ref[v], d_pos, d_neg, RevealCancel().tolerance)
            prev = env[u]
            table = dict(prev.ratios) if isinstance(prev, SplitRef) else {}
            table[lin.index] = ratios
            env[u] = SplitRef(env_ref[u], table)
            env[v] = PairedRef(env_ref[v])
        return env


__all__ = ["Method", "Gradient", "GradientXInput", "IntegratedGradients", "SmoothGrad", "DeconvNet",
           "GuidedBackprop", "LRP", "DeepTaylor", "DeepLIFT", "backward"]
