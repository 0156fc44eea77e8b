"""Composites: which rule goes where, as data.

A :class:`Composite` is an ordered tuple of ``(selector, rule)`` pairs; the first selector that
matches a segment gives its rule, and a segment no selector matches keeps its ordinary gradient.
Selectors are

* a segment kind: ``"dense"``, ``"conv"``, ``"activation"``, ``"maxpool"``, ``"sum"`` (adds of
  x-dependent tensors, sum and average pools, ``cumsum``, ``jax.ops.segment_sum``'s
  scatter-add), ``"scale"``, ``"bilinear"`` (a product of two x-dependent tensors),
  ``"normalise"`` (LayerNorm, RMSNorm),
  ``"softmax"`` (a softmax inside the model: attention weights);
* ``"attention"``: a bilinear segment one of whose operands is a softmax output (``A·V``);
* ``"linear"`` (dense or conv), ``"first"`` / ``"last"`` (the linear layer nearest the input /
  the output), ``"name:<regex>"`` (module path, e.g. ``"name:Conv_0"``; NNX models have no paths);
* a tuple of selectors (all must match), or any callable ``segment -> bool``.

The presets follow Zennit's (Anders et al. 2021, ``zennit.composites``): one shared base map
(activations pass relevance through, sums and average pools split it proportionally, lone
elementwise scalings pass, max pools keep their winner-take-all gradient) under per-layer rules.

Example:
    >>> import jaxattr as ja
    >>> comp = ja.composites.Composite((("first", ja.rules.Flat()), ("linear", ja.rules.Epsilon(0.25))))
    >>> method = ja.LRP(comp)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence, Union

from .engine.segment import KINDS, Segment
from .rules.activation import Deconv, Guided
from .rules.base import Norm, Pass, Rule
from .rules.lrp import AlphaBeta, Epsilon, Flat, Gamma, ZBox, ZPlus, as_bound
from .rules.product import ConstantAttention, HoldScale, SignalTakeAll, Uniform
from .rules.softmax import Constant, SoftmaxTaylor

Selector = Union[str, tuple, Callable[[Segment], bool]]


def matches(selector: Selector, segment: Segment) -> bool:
    """Whether ``selector`` (see the module docstring) selects ``segment``."""
    if callable(selector):
        return bool(selector(segment))
    if isinstance(selector, tuple):
        return all(matches(s, segment) for s in selector)
    if selector in KINDS:
        return segment.kind == selector
    if selector == "attention":
        return segment.kind == "bilinear" and bool(segment.held)
    if selector == "linear":
        return segment.family == "linear"
    if selector == "first":
        return segment.family == "linear" and segment.is_first
    if selector == "last":
        return segment.family == "linear" and segment.is_last
    if isinstance(selector, str) and selector.startswith("name:"):
        return re.search(selector[5:], segment.name) is not None
    raise ValueError(f"unknown selector {selector!r}: use one of "
                     f"{KINDS + ('linear', 'first', 'last', 'attention')}, "
                     "'name:<regex>', a tuple of selectors, or a callable segment -> bool")


@dataclasses.dataclass(frozen=True)
class Composite:
    """Ordered ``(selector, rule)`` pairs; first match wins."""

    layer_map: tuple = ()

    def __post_init__(self):
        for pair in self.layer_map:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Rule)):
                raise TypeError(f"a composite entry must be (selector, rule), got {pair!r}")

    def assign(self, segments: Sequence[Segment]) -> Mapping[Segment, Rule]:
        """The rule of every segment some selector matches."""
        out = {}
        for seg in segments:
            for selector, rule in self.layer_map:
                if matches(selector, seg):
                    if seg.kind not in rule.kinds:
                        raise ValueError(
                            f"rule {rule!r} cannot be applied to the {seg.describe()}: it applies to "
                            f"{', '.join(rule.kinds)}. Narrow the selector {selector!r}.")
                    out[seg] = rule
                    break
        return out

    def __add__(self, other: "Composite") -> "Composite":
        return Composite(self.layer_map + other.layer_map)


#: Zennit's ``layer_map_base``: what every LRP composite does outside dense/conv layers; and
#: on products of two x-dependent tensors (gates, GLUs, attention) AttnLRP's uniform rule (½ to
#: each), on normalisations (LayerNorm, RMSNorm) the scale held constant (AttnLRP, CP-LRP), on
#: a softmax inside the model AttnLRP's rule (Achtibat et al. 2024, Prop. 3.1).
LRP_BASE = Composite((("activation", Pass()), ("sum", Norm()), ("scale", Pass()),
                      ("bilinear", Uniform()), ("normalise", HoldScale()),
                      ("softmax", SoftmaxTaylor())))


def lrp(rule: Rule) -> Composite:
    """One rule on every dense/conv layer, over the LRP base map."""
    return Composite((("linear", rule),)) + LRP_BASE


def epsilon_plus(epsilon: float = 1e-6) -> Composite:
    """Zennit ``EpsilonPlus``: dense → ε, conv → z⁺."""
    return Composite((("dense", Epsilon(epsilon)), ("conv", ZPlus()))) + LRP_BASE


def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
    """Zennit ``EpsilonPlusFlat``: first layer → flat, dense → ε, conv → z⁺."""
    return Composite((("first", Flat()),)) + epsilon_plus(epsilon)


def epsilon_alpha2_beta1(epsilon: float = 1e-6) -> Composite:
    """Zennit ``EpsilonAlpha2Beta1``: dense → ε, conv → α2β1."""
    return Composite((("dense", Epsilon(epsilon)), ("conv", AlphaBeta(2.0, 1.0)))) + LRP_BASE


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6) -> Composite:
    """Zennit ``EpsilonAlpha2Beta1Flat``: first layer → flat, then as :func:`epsilon_alpha2_beta1`."""
    return Composite((("first", Flat()),)) + epsilon_alpha2_beta1(epsilon)


def epsilon_gamma_box(low: Any = 0.0, high: Any = 1.0, gamma: float = 0.25,
                      epsilon: float = 1e-6) -> Composite:
    """Zennit ``EpsilonGammaBox``: first conv → z^B(low, high), conv → γ, dense → ε."""
    return Composite(((("first", "conv"), ZBox(_bound(low), _bound(high))),
                      ("conv", Gamma(gamma)), ("dense", Epsilon(epsilon)))) + LRP_BASE


def gated_product(segment: Segment) -> bool:
    """Selector: a product of one gate (a sigmoid output, possibly as ``1 − z``) and one signal,
    as in LSTM and GRU cells (:attr:`jaxattr.engine.Segment.gates`)."""
    return segment.kind == "bilinear" and sum(segment.gates) == 1


def lstm_signal_take_all(epsilon: float = 1e-3) -> Composite:
    """LRP for LSTMs/GRUs after Arras et al. 2017 ("Explaining recurrent neural network
    predictions in sentiment analysis"): ε on every dense/conv layer, and in a gated product the
    signal takes all the relevance, the gate none (:class:`~jaxattr.rules.SignalTakeAll`); other
    products (no gate, or two) keep the base map's uniform split, the rest the LRP base map.
    ``epsilon`` defaults to Arras et al.'s 0.001."""
    return Composite(((gated_product, SignalTakeAll()), ("linear", Epsilon(epsilon)))) + LRP_BASE


def attn_lrp(epsilon: float = 1e-6) -> Composite:
    """AttnLRP (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation
    for transformers", ICML), as LXT implements it:

    ========================================  ==============================================
    segment                                    rule
    ========================================  ==============================================
    dense/conv layers (with their bias)        ε (:class:`~jaxattr.rules.Epsilon`)
    sums of tensors (residuals), means         ε (:class:`~jaxattr.rules.Norm`), eq. 8
    lone bias adds, scalings (LayerNorm's      ε (:class:`~jaxattr.rules.Norm`): a bias absorbs
    ``γ``, ``β``, position embeddings)         its share, a scaling passes all
    elementwise nonlinearities (GELU, …)       identity (:class:`~jaxattr.rules.Pass`), Prop. 3.4
    products (gates, ``QKᵀ``, ``AV``)           uniform (:class:`~jaxattr.rules.Uniform`), Props 3.2–3.3
    softmax                                    :class:`~jaxattr.rules.SoftmaxTaylor`, Prop. 3.1
    LayerNorm / RMSNorm normalisation          identity (:class:`~jaxattr.rules.HoldScale`), Prop. 3.4
    ========================================  ==============================================

    Example:
        >>> import jaxattr as ja
        >>> method = ja.LRP(ja.composites.attn_lrp(1e-6))
    """
    return Composite((("linear", Epsilon(epsilon)), ("activation", Pass()), ("sum", Norm(epsilon)),
                      ("scale", Norm(epsilon)), ("bilinear", Uniform(epsilon)),
                      ("normalise", HoldScale()), ("softmax", SoftmaxTaylor())))


def cp_lrp(epsilon: float = 1e-6) -> Composite:
    """CP-LRP (Ali et al. 2022, "XAI for transformers: better explanations through conservative
    propagation", ICML): :func:`attn_lrp`'s map with the attention weights held constant — no
    relevance enters a softmax (:class:`~jaxattr.rules.Constant`) and ``A·V`` sends all of its
    relevance to ``V`` by the ε-rule (:class:`~jaxattr.rules.ConstantAttention`); LayerNorm's
    scale is held constant as in AttnLRP. Other products (gates) keep the uniform rule.

    Example:
        >>> import jaxattr as ja
        >>> method = ja.LRP(ja.composites.cp_lrp(1e-6))
    """
    return Composite((("attention", ConstantAttention(epsilon)), ("softmax", Constant()))) + attn_lrp(epsilon)


def guided_backprop() -> Composite:
    return Composite((("activation", Guided()),))


def deconvnet() -> Composite:
    return Composite((("activation", Deconv()),))


def _bound(v):
    return as_bound(v)


__all__ = ["Composite", "LRP_BASE", "matches", "lrp", "epsilon_plus", "epsilon_plus_flat",
           "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box",
           "guided_backprop", "deconvnet", "gated_product", "lstm_signal_take_all", "attn_lrp",
           "cp_lrp"]
