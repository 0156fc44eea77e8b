"""Layer-wise Relevance Propagation rules for dense and conv layers.

Each rule only declares its terms (see :mod:`jaxattr.rules.base`); the propagation is shared.
Semantics follow Zennit (Anders et al. 2021, `zennit.rules`) unless stated otherwise; every rule
sees the layer *folded* with its bias and any inference-mode batch norm after it.

References:
    Bach et al. 2015, "On pixel-wise explanations for non-linear classifier decisions by
    layer-wise relevance propagation", PLoS ONE.
    Montavon et al. 2017, "Explaining nonlinear classification decisions with deep Taylor
    decomposition", Pattern Recognition.
    Montavon et al. 2019, "Layer-wise relevance propagation: an overview".
    Lapuschkin et al. 2019, "Unmasking Clever Hans predictors" (Flat).
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np

from .base import ID, NONE, Group, LayerRule, Term

POS = (("pos", 1.0),)
NEG = (("neg", 1.0),)


@dataclasses.dataclass(frozen=True)
class Epsilon(LayerRule):
    """LRP-ε: ``R_i = x_i Σ_j w_ij R_j / stab(z_j)``, ``z_j = Σ_i w_ij x_i + b_j``.

    ``Epsilon(0.0)`` is LRP-0 (Bach et al. 2015). The bias is kept (it absorbs relevance).

    Example:
        >>> import jaxattr as ja
        >>> method = ja.LRP(ja.rules.Epsilon(1e-6))
    """

    epsilon: float = 1e-6

    def groups(self):
        return (Group((Term("x"),)),)


@dataclasses.dataclass(frozen=True)
class ZPlus(LayerRule):
    """z⁺ (α1β0 over positive and negative inputs): terms ``[x⁺, W⁺, b⁺]`` and ``[x⁻, W⁻, 0]``
    over one shared denominator (Montavon et al. 2017; Zennit ``ZPlus``)."""

    def groups(self):
        return (Group((Term("pos", POS, POS), Term("neg", NEG, NONE))),)


@dataclasses.dataclass(frozen=True)
class AlphaBeta(LayerRule):
    """αβ rule: ``R = α R⁺ − β R⁻`` with positive contributions ``x⁺W⁺ + x⁻W⁻`` and negative
    ``x⁺W⁻ + x⁻W⁺`` each normalised by its own denominator (Bach et al. 2015).

    ``bias``: ``"split"`` (Zennit: b⁺ joins the positive denominator, b⁻ the negative one),
    ``"whole"`` (iNNvestigate 1.0.8: the whole bias joins both denominators), ``"none"``
    (bias ignored; then relevance is conserved whenever α − β = 1).
    """

    alpha: float = 2.0
    beta: float = 1.0
    bias: str = "split"

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0, got alpha={self.alpha}, beta={self.beta}")
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta needs alpha - beta = 1 to conserve relevance, got "
                             f"alpha={self.alpha}, beta={self.beta}")
        if self.bias not in ("split", "whole", "none"):
            raise ValueError(f"AlphaBeta bias must be 'split', 'whole' or 'none', got {self.bias!r}")

    def _pair(self, w_pos, w_neg, sign_bias):
        if self.bias == "none":
            return Term("pos", w_pos, NONE), Term("neg", w_neg, NONE)
        if self.bias == "whole":
            return Term("pos", w_pos, POS), Term("neg", w_neg, NEG)
        return Term("pos", w_pos, sign_bias), Term("neg", w_neg, NONE)

    def groups(self):
        out = [Group(self._pair(POS, NEG, POS), coef=self.alpha)]
        if self.beta:
            out.append(Group(self._pair(NEG, POS, NEG), coef=-self.beta))
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class Gamma(LayerRule):
    """γ rule, generalised to signed inputs (Montavon et al. 2019; Andéol et al. 2021; Zennit
    ``Gamma``): where ``z > 0`` the weights ``W + γW⁺`` act on x⁺ and ``W + γW⁻`` on x⁻ (bias
    ``b + γb⁺`` in the first term); where ``z < 0`` the roles swap; ``z = 0`` gets nothing."""

    gamma: float = 0.25

    def groups(self):
        g = self.gamma
        up = (("id", 1.0), ("pos", g))
        down = (("id", 1.0), ("neg", g))
        return (Group((Term("pos", up, up), Term("neg", down, NONE)), where="pos"),
                Group((Term("pos", down, down), Term("neg", up, NONE)), where="neg"))


@dataclasses.dataclass(frozen=True)
class Flat(LayerRule):
    """Flat rule: ``R_i = Σ_j R_j / Σ_i 1`` — all weights and inputs set to one, no bias
    (Lapuschkin et al. 2019). Used on the first layer."""

    def groups(self):
        return (Group((Term("ones", (("ones", 1.0),), NONE),)),)


@dataclasses.dataclass(frozen=True)
class WSquare(LayerRule):
    """w² rule: ``R_i = Σ_j w_ij² R_j / Σ_i w_ij²`` (Montavon et al. 2017). Like Zennit, the
    squared bias stays in the denominator."""

    def groups(self):
        sq = (("sq", 1.0),)
        return (Group((Term("ones", sq, sq),)),)


Bound = Union[float, tuple]


def as_bound(value, name: str = "bound") -> Bound:
    """A z^B bound as a float or a tuple of per-channel floats (hashable, for ``jit``).

    Raises ``ValueError`` for anything but a finite number or a 1-D sequence of finite numbers."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"z^B {name} must be a finite number or a 1-D sequence of per-channel "
                         f"numbers (the input's last axis), got {value!r}")
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


@dataclasses.dataclass(frozen=True)
class ZBox(LayerRule):
    """z^B rule for inputs bounded in ``[low, high]`` (Montavon et al. 2017):
    ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) R_j / Σ_i (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻)``.
    ``low``/``high``: floats, or tuples of per-channel values (last axis). The bias cancels."""

    low: Bound = 0.0
    high: Bound = 1.0

    def __post_init__(self):
        object.__setattr__(self, "low", as_bound(self.low, "low"))
        object.__setattr__(self, "high", as_bound(self.high, "high"))

    def backward(self, view, inputs, output, cotangent, reference):
        shape = inputs[0].shape
        for name, bound in (("low", self.low), ("high", self.high)):
            if isinstance(bound, tuple) and len(bound) not in (1, shape[-1]):
                raise ValueError(f"ZBox {name} has {len(bound)} per-channel values, but the input of "
                                 f"the layer it is applied to has shape {shape}: {shape[-1]} channels "
                                 "on its last axis. Pass one value per channel, or a scalar.")
        return super().backward(view, inputs, output, cotangent, reference)

    def groups(self):
        return (Group((Term("x", ID, ID), Term(self.low, POS, POS, -1.0),
                       Term(self.high, NEG, NEG, -1.0))),)


__all__ = ["Epsilon", "ZPlus", "AlphaBeta", "Gamma", "Flat", "WSquare", "ZBox"]
