"""The shape every rule has, and the one propagation routine the LRP rules share.

A rule is a small frozen dataclass (hashable, so methods holding rules are static ``jit``
arguments) with one method::

    backward(view, inputs, output, cotangent, reference) -> tuple of input cotangents

``view`` is the segment (:mod:`jaxattr.engine.layer`), ``inputs`` its x-dependent inputs,
``output`` its forward output, ``cotangent`` what flows back into it (relevance for the LRP
family, a gradient or multiplier otherwise) and ``reference`` the reference values of the inputs
(DeepLIFT) or ``None``.

LRP rules only *declare* their parts (Zennit's design, Anders et al. 2021): groups of terms,
each term an input modifier, a weight modifier and a bias modifier; :func:`propagate` does the
rest once for all of them:

.. math::

    R_{in} = \\sum_g c_g \\sum_{t \\in g} s_t\\, x_t \\odot J_t^\\top
        \\left( \\frac{R_{out} \\odot m_g}{\\mathrm{stab}\\left(\\sum_{t\\in g} s_t z_t\\right)} \\right),
    \\qquad z_t = W_t x_t + b_t,

with ``stab(z) = z + ε·sign(z)`` (sign(0) = +1) and ``0/0 = 0``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

ID = (("id", 1.0),)
NONE: tuple = ()


class Term(NamedTuple):
    """One modified copy of the layer: ``z_t = W_t · in_t + b_t``.

    ``input``: ``"x"``, ``"pos"`` (x⁺), ``"neg"`` (x⁻), ``"ones"``, or a constant (float, or a
    tuple of per-channel floats broadcast over the last axis). ``weight``/``bias``: modifiers
    (see :mod:`jaxattr.engine.layer`); ``()`` as bias means no bias. ``sign``: ±1 in the sum.
    """

    input: Union[str, float, tuple] = "x"
    weight: tuple = ID
    bias: tuple = ID
    sign: float = 1.0


class Group(NamedTuple):
    """Terms sharing one denominator, weighted by ``coef``; ``where``: ``"pos"``/``"neg"`` keeps
    only outputs whose original value is > 0 / < 0 (Gamma)."""

    terms: tuple
    coef: float = 1.0
    where: Optional[str] = None


def stabilize(z, epsilon: float):
    """``z + ε·sign(z)`` with sign(0) = +1 (Zennit's stabiliser)."""
    if epsilon == 0:
        return z
    return z + epsilon * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def safe_div(num, den):
    """``num / den`` with ``0`` where ``den == 0``."""
    zero = den == 0
    return jnp.where(zero, 0.0, num / jnp.where(zero, 1.0, den))


def _input(mod, x):
    if mod == "x":
        return x
    if mod == "pos":
        return jnp.maximum(x, 0)
    if mod == "neg":
        return jnp.minimum(x, 0)
    if mod == "ones":
        return jnp.ones_like(x)
    return jnp.broadcast_to(jnp.asarray(mod, x.dtype), x.shape)


def propagate(view, x, output, relevance, groups: Sequence[Group], epsilon: float):
    """Shared LRP backward of a layer (see the module docstring for the formula)."""
    nonneg = view.segment.nonneg_input
    total = 0.0
    for group in groups:
        parts, den = [], 0.0
        for t in group.terms:
            if nonneg and t.input == "neg":
                # x⁻ = 0 on a non-negative input: the term is its bias alone and passes no
                # relevance (no convolution, no transposed convolution)
                den = den + t.sign * view.bias_term(t.bias)
                continue
            inp = _input(t.input, x)
            z, vjp = jax.vjp(lambda i, t=t: view.z(i, t.weight, t.bias), inp)
            parts.append((t, inp, vjp))
            den = den + t.sign * z
        scaled = safe_div(relevance, stabilize(den, epsilon))
        if group.where == "pos":
            scaled = jnp.where(output > 0, scaled, 0.0)
        elif group.where == "neg":
            scaled = jnp.where(output < 0, scaled, 0.0)
        for t, inp, vjp in parts:
            total = total + (group.coef * t.sign) * inp * vjp(scaled)[0]
    return jnp.zeros_like(x) if isinstance(total, float) else total


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base class: subclasses implement :meth:`backward`."""

    #: segment kinds this rule may be attached to (checked when a composite assigns it)
    kinds = ("dense", "conv", "activation", "maxpool", "sum", "scale")

    def backward(self, view, inputs, output, cotangent, reference):  # pragma: no cover
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class LayerRule(Rule):
    """An LRP rule over a layer's terms: subclasses define :meth:`groups`."""

    kinds = ("dense", "conv")
    #: stabiliser ε of every denominator (keyword-only, so rule parameters come first)
    epsilon: float = dataclasses.field(default=1e-6, kw_only=True)

    def groups(self) -> Sequence[Group]:  # pragma: no cover
        raise NotImplementedError

    def backward(self, view, inputs, output, cotangent, reference):
        return (propagate(view, inputs[0], output, cotangent, self.groups(), self.epsilon),)


@dataclasses.dataclass(frozen=True)
class Gradient(Rule):
    """The ordinary VJP (explicitly, e.g. to override a composite's default)."""

    def backward(self, view, inputs, output, cotangent, reference):
        return jax.vjp(view.fn, *inputs)[1](cotangent)


@dataclasses.dataclass(frozen=True)
class Pass(Rule):
    """Identity: the cotangent passes unchanged (Zennit's ``Pass``; LRP default for activations)."""

    kinds = ("activation", "scale")

    def backward(self, view, inputs, output, cotangent, reference):
        return (cotangent,)


@dataclasses.dataclass(frozen=True)
class Norm(Rule):
    """Proportional split of relevance over the inputs of a weightless linear op
    (sum pooling, average pooling, skip-connection adds):
    ``R_i = x_i ⊙ J_iᵀ (R / stab(f(x)))`` — the ε-rule with the op's own parameters (Zennit ``Norm``).
    """

    kinds = ("sum", "scale", "dense", "conv")
    epsilon: float = 1e-6

    def backward(self, view, inputs, output, cotangent, reference):
        scaled = safe_div(cotangent, stabilize(output, self.epsilon))
        grads = jax.vjp(view.fn, *inputs)[1](scaled)
        return tuple(x * g for x, g in zip(inputs, grads))
