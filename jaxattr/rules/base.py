"""The shape every rule has.

A rule is a small frozen dataclass (hashable, so methods holding rules are static ``jit``
arguments) with one method::

    backward(view, inputs, output, cotangent, reference) -> tuple of input cotangents

``view`` is the segment (:mod:`jaxattr.engine.layer`), ``inputs`` its x-dependent inputs,
``output`` its forward output, ``cotangent`` what flows back into it (relevance for the LRP
family, a gradient or multiplier otherwise) and ``reference`` the reference values of the inputs
(DeepLIFT) or ``None``. LRP rules (:class:`LayerRule`) only declare their terms; the
propagation they share is :func:`jaxattr.rules.terms.propagate`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax

from .terms import ID, NONE, Group, Term, propagate, safe_div, stabilize

__all__ = ["ID", "NONE", "Gradient", "Group", "LayerRule", "Norm", "Pass", "Rule", "Term",
           "propagate", "safe_div", "stabilize"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base class: subclasses implement :meth:`backward`.

    ``backward(view, inputs, output, cotangent, reference)`` returns one relevance (or
    multiplier) per input, or ``None`` for an input that receives none: the engine passes it on
    as a symbolic zero, so nothing upstream of only such inputs is computed (see
    :func:`jaxattr.engine.rewrite.bind_rule`)."""

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
        return (unbroadcast(cotangent, inputs[0].shape),)


def unbroadcast(value, shape):
    """``value`` summed over the axes a broadcast to its shape added or stretched from 1 (a scale
    ``x * s`` whose constant ``s`` is wider than ``x``): relevance passed back to ``x`` in full."""
    value = jax.numpy.asarray(value)
    extra = value.ndim - len(shape)
    if extra:
        value = value.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, (v, n) in enumerate(zip(value.shape, shape)) if n == 1 and v != 1)
    return value.sum(axis=stretched, keepdims=True) if stretched else value


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
