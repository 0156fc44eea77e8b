"""What a rule sees of a segment: its forward function and, for layers, the folded ``(W, a, c)``.

A linear segment computes ``z = a ⊙ lin(x, W) + c``: ``lin`` is the ``dot_general`` or
``conv_general_dilated`` as traced, ``a`` and ``c`` fold the elementwise affine chain after it
(bias add, inference-mode batch norm). Rules ask for ``z`` under modified weights and biases.
Weight modifiers form a small basis, each correct for the *folded* weight ``a·W`` without ever
materialising it (``a`` may be per output unit, of any layout):

=========  ==========================  ====================================================
modifier   folded weight                computed as
=========  ==========================  ====================================================
``id``     ``aW``                       ``a ⊙ lin(x, W)``
``pos``    ``(aW)⁺``                    ``a⁺ ⊙ lin(x, W⁺) + a⁻ ⊙ lin(x, W⁻)``
``neg``    ``(aW)⁻``                    ``a⁺ ⊙ lin(x, W⁻) + a⁻ ⊙ lin(x, W⁺)``
``sq``     ``(aW)²``                    ``a² ⊙ lin(x, W²)``
``ones``   ``1``                        ``lin(x, 1)``
=========  ==========================  ====================================================

Bias modifiers act on the folded bias ``c``: ``id``, ``pos`` (c⁺), ``neg`` (c⁻), ``sq`` (c²).
A modifier is a tuple of ``(name, coefficient)`` pairs, e.g. Gamma's ``(("id", 1), ("pos", γ))``.
:meth:`LinearView.expand` writes one as coefficients over the scales ``1, a⁺, a⁻, a²`` and the
basis weights ``W, W⁺, W², 1`` (``W⁻ = W − W⁺``), which is how
:func:`jaxattr.rules.terms.propagate` shares convolutions between terms.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from .segment import RELAYOUT as _RELAYOUT, Segment
from .trace import Lit, is_var

Modifier = Sequence  # of (name, coefficient)


def _pos(v):
    return jnp.maximum(v, 0)


def _neg(v):
    return jnp.minimum(v, 0)


_WEIGHT_BASIS = {"id": lambda w: w, "pos": _pos, "neg": _neg, "sq": jnp.square, "ones": jnp.ones_like}
_SWAP = {"pos": "neg", "neg": "pos"}


class View:
    """Forward function of a segment with its constants bound: ``fn(*inputs) -> output``."""

    def __init__(self, segment: Segment, consts: Sequence):
        self.segment = segment
        self.kind = segment.kind
        self._env = dict(zip(segment.consts(), consts))

    def _read(self, env, a):
        if isinstance(a, Lit):
            return a.value
        return env[a] if a in env else self._env[a]

    def run(self, nodes, inputs: dict) -> dict:
        """Evaluate ``nodes`` on ``inputs`` with the traced primitives (no fast implementations:
        this is a rule-wrapped segment's forward, and what rules differentiate)."""
        env = dict(inputs)
        for node in nodes:
            outs = node.bind(*[self._read(env, a) for a in node.ins], fast=False)
            env.update(zip(node.outs, outs))
        return env

    def fn(self, *inputs):
        env = self.run(self.segment.nodes, dict(zip(self.segment.inputs, inputs)))
        return env[self.segment.output]

    def z(self, inp, weight: Modifier = (("id", 1.0),), bias: Modifier = (("id", 1.0),)):
        """Output under modified parameters. Segments without weights support only ``id``."""
        if tuple(weight) != (("id", 1.0),):
            raise ValueError(f"{self.segment.describe()} has no weights; a rule that modifies "
                             f"weights ({weight}) cannot be applied to it.")
        return self.fn(inp)


class LinearView(View):
    """A dense/conv layer folded with its trailing affine chain: ``z = a ⊙ lin(x, W) + c``.

    ``lin`` is the traced product together with the plumbing the segment absorbed around it: a
    zero ``pad`` of its input (the padded positions are not inputs) and layout changes of its
    output before the bias (``transpose``/``reshape``/``squeeze`` left by ``jax.vmap`` or a
    per-example model), so the same layer gets the same rule however it is written."""

    def __init__(self, segment: Segment, consts: Sequence):
        super().__init__(segment, consts)
        nodes = segment.nodes
        core = segment.core
        at = nodes.index(core)
        after = at + 1
        while after < len(nodes) and nodes[after].prim in _RELAYOUT:
            after += 1
        self._lin_node = core
        self._pre, self._post = nodes[:at], nodes[at + 1:after]
        x_var = self._pre[-1].outs[0] if self._pre else segment.inputs[0]
        self._x_pos = next(i for i, a in enumerate(core.ins) if is_var(a) and a == x_var)
        self.weight = self._read({}, core.ins[1 - self._x_pos])
        self.scale, self.bias = self._fold(nodes[after:], nodes[after - 1].outs[0])

    def _fold(self, chain, t):
        a = c = None
        for node in chain:
            k_pos = next(i for i, x in enumerate(node.ins) if not (is_var(x) and x == t)) if len(node.ins) > 1 else None
            k = self._read({}, node.ins[k_pos]) if k_pos is not None else None
            p = node.prim
            if p in ("add", "add_any"):
                c = k if c is None else c + k
            elif p == "sub" and k_pos == 1:  # z - k
                c = -k if c is None else c - k
            elif p == "sub":  # k - z
                a = -1.0 if a is None else -a
                c = k if c is None else k - c
            elif p == "mul":
                a = k if a is None else a * k
                c = None if c is None else c * k
            elif p == "div":
                a = 1.0 / k if a is None else a / k
                c = None if c is None else c / k
            elif p == "neg":
                a = -1.0 if a is None else -a
                c = None if c is None else -c
            t = node.outs[0]
        return a, c

    def _apply(self, inp, weight, fast: bool):
        """``post(lin(pre(inp), weight))`` through the absorbed plumbing."""
        node = self._lin_node
        if self._pre:
            env = self.run(self._pre, {self.segment.inputs[0]: inp})
            inp = env[self._pre[-1].outs[0]]
        ins = [None, None]
        ins[self._x_pos], ins[1 - self._x_pos] = inp, weight
        out = node.bind(*ins, fast=fast)[0]
        if self._post:
            out = self.run(self._post, {node.outs[0]: out})[self._post[-1].outs[0]]
        return out

    def lin(self, inp, weight):
        """``lin(inp, weight)`` with the traced primitives (no fast implementation: those are
        ``custom_vjp`` functions, which forward-mode autodiff of an explanation could not enter)."""
        return self._apply(inp, weight, fast=False)

    def lin_transpose(self, inp, weight, cotangent):
        """``lin(·, weight)ᵀ cotangent`` at ``inp``: the layer's input-VJP, through the node's fast
        implementation when it has one (:mod:`jaxattr.engine.fast`; its backward is ordinary,
        differentiable JAX code)."""
        return jax.vjp(lambda i: self._apply(i, weight, fast=True), inp)[1](cotangent)[0]

    def expand(self, weight: Modifier) -> dict:
        """A weight modifier as ``{scale: {basis: coefficient}}``: the term's ``z`` (without
        bias) is ``Σ_scale S_scale ⊙ Σ_basis coefficient · lin(x, basis(W))``, ``S`` applied by
        :meth:`scaled`.

        The basis is ``id`` (W), ``pos`` (W⁺), ``sq`` (W²), ``ones`` (1); W⁻ is written
        ``id − pos``, so that rules mixing W, W⁺ and W⁻ share their convolutions
        (:func:`jaxattr.rules.terms.propagate`). Zero coefficients are dropped."""
        out: dict = {}

        def add(scale, name, coef):
            if name == "neg":
                add(scale, "id", coef)
                add(scale, "pos", -coef)
                return
            vec = out.setdefault(scale, {})
            vec[name] = vec.get(name, 0.0) + coef

        for name, coef in weight:
            if self.scale is None or name == "ones":
                add("one", name, coef)
            elif name == "sq":
                add("sq", name, coef)
            else:  # (aW)^± = a⁺ W^± + a⁻ W^∓
                add("a+", name, coef)
                add("a-", _SWAP.get(name, name), coef)
        out = {scale: {b: c for b, c in vec.items() if c != 0} for scale, vec in out.items()}
        return {scale: vec for scale, vec in out.items() if vec}

    def scaled(self, scale: str, value):
        """``S_scale ⊙ value`` for a scale of :meth:`expand` (``1``, ``a⁺``, ``a⁻``, ``a²``)."""
        if scale == "one":
            return value
        return {"a+": _pos, "a-": _neg, "sq": jnp.square}[scale](self.scale) * value

    def weight_of(self, direction: dict):
        """``Σ_b c_b · basis_b(W)`` for ``direction = {basis: c}``; W itself for ``{"id": 1}`` (so
        that XLA sees the forward's own convolution and computes it once)."""
        if direction == {"id": 1.0}:
            return self.weight
        return sum(c * _WEIGHT_BASIS[b](self.weight) for b, c in direction.items())

    def lin_constant(self, value, like, weight):
        """``lin(broadcast_to(value, like.shape), weight)`` for a constant input (one value, or
        one per channel of the last axis). Computed on one row and broadcast over the leading
        axis when the layer keeps rows apart (a convolution with batch axis 0, a dense layer
        ``x·W``): the rows of a constant are equal, so are those of its image."""
        node, x_pos = self._lin_node, self._x_pos
        keeps_rows = not self._post and all(n.params["padding_config"][0] == (0, 0, 0)
                                            for n in self._pre)
        if not keeps_rows:
            rows = False
        elif node.prim == "conv_general_dilated":
            dn = node.params["dimension_numbers"]
            rows = (x_pos == 0 and dn.lhs_spec[0] == 0 and dn.out_spec[0] == 0
                    and node.params["batch_group_count"] == 1)
        else:
            (contract, _), (batch, _) = node.params["dimension_numbers"]
            rows = x_pos == 0 and not batch and 0 not in contract
        full = jnp.broadcast_to(jnp.asarray(value, like.dtype), like.shape)
        if not rows or like.shape[0] == 1:
            return self.lin(full, weight)
        one = self.lin(full[:1], weight)
        return jnp.broadcast_to(one, (like.shape[0],) + one.shape[1:])

    def z(self, inp, weight: Modifier = (("id", 1.0),), bias: Modifier = (("id", 1.0),)):
        z = 0.0
        for scale, direction in self.expand(weight).items():
            z = z + self.scaled(scale, self.lin(inp, self.weight_of(direction)))
        return z + self.bias_term(bias)

    def bias_term(self, bias: Modifier):
        """The modified folded bias alone (``0.0`` when the layer has none)."""
        c = self.bias
        if c is None:
            return 0.0
        total = 0.0
        for name, coef in bias:
            total = total + coef * _WEIGHT_BASIS[name](c)
        return total


def make_view(segment: Segment, consts: Sequence) -> View:
    return (LinearView if segment.family == "linear" else View)(segment, consts)


