"""Rules for the elementwise product of two x-dependent tensors (the engine's ``bilinear``
segments: gates of GRUs/LSTMs, GLUs, ``a * sigmoid(b)``).

**DeepLIFT** (Shrikumar et al. 2016, §2.3.5, eqs 17–18). For ``y = x₁ x₂``,

.. math::

    Δy = x_1 x_2 − x_1^0 x_2^0
       = \\big(x_2^0 + ½Δx_2\\big)\\, Δx_1 + \\big(x_1^0 + ½Δx_1\\big)\\, Δx_2 ,

so the multipliers ``m_{x₁} = x₂⁰ + ½Δx₂ = ½(x₂ + x₂⁰)`` and ``m_{x₂} = ½(x₁ + x₁⁰)`` keep
summation-to-delta exact (:class:`DeepLIFTProduct`): each factor is credited with its own
difference times the other factor's mean over the two end points.

**LRP** (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for
transformers", ICML): the *uniform* rule splits the relevance of a
product of two inputs equally, ``R_{x₁} = R_{x₂} = ½ R_y`` (:class:`Uniform`). It conserves, and
is what the LRP presets (:data:`jaxattr.composites.LRP_BASE`) put on every product.

**LSTM/GRU gates** (Arras, Montavon, Müller & Samek 2017, "Explaining recurrent neural network
predictions in sentiment analysis", WASSA): in a product of a *gate* (a sigmoid output, possibly
as ``1 − z``) and a *signal*, the gate only decides how much of the signal passes, so the signal
takes all the relevance, ``R_signal = R_y``, ``R_gate = 0`` (:class:`SignalTakeAll`; the engine
marks the gate factors, :attr:`jaxattr.engine.Segment.gates`).

**Normalisation** (the engine's ``normalise`` segments, ``y = s ⊙ g(s)`` with ``g`` through a
reduction: LayerNorm's ``(x − μ) ⊙ rsqrt(σ² + ε)``, RMSNorm): LRP holds the normalising scale
constant, ``R_s = R_y``, ``R_{g} = 0`` (:class:`HoldScale`; the rule of AttnLRP and CP-LRP for
LayerNorm, Ali et al. 2022, Achtibat et al. 2024); DeepLIFT keeps its exact product rule.

A rule-based method whose composite gives a product no rule raises an error instead of taking
the product's gradient (which, fed relevance, returns ``R·x₂``: not relevance).
"""

from __future__ import annotations

import dataclasses

import jax

from .base import Rule, unbroadcast
from .deeplift import _require_reference, reference_value


@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """AttnLRP's uniform rule for ``y = x₁ ⊙ x₂``: ``R_{x₁} = R_{x₂} = ½ R_y`` (Achtibat et al.
    2024): each factor gets half of the product's relevance, so relevance is conserved."""

    kinds = ("bilinear",)

    def backward(self, view, inputs, output, cotangent, reference):
        half = 0.5 * cotangent
        return tuple(unbroadcast(half, x.shape) for x in inputs)


@dataclasses.dataclass(frozen=True)
class SignalTakeAll(Rule):
    """Arras et al. 2017's rule for a gated product ``y = g ⊙ s`` (LSTM/GRU gates): the signal
    ``s`` takes all the relevance, the gate ``g`` (a ``logistic``/sigmoid output, possibly through
    ``1 − z`` and relayouts) none: ``R_s = R_y``, ``R_g = 0``. Conserves relevance.

    Applies to ``bilinear`` segments with exactly one gate factor (``segment.gates``); on any
    other product it raises ``ValueError`` (select only gated products, as
    :func:`jaxattr.composites.lstm_signal_take_all` does with
    :func:`jaxattr.composites.gated_product`).

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> gated = lambda p, x: jax.nn.sigmoid(x @ p[0]) * jnp.tanh(x @ p[1])
        >>> p, x = (jnp.ones((2, 1)), jnp.ones((2, 1))), jnp.array([[1.0, 2.0]])
        >>> R = ja.attribute(gated, p, x, method=ja.LRP(ja.composites.lstm_signal_take_all()))
    """

    kinds = ("bilinear",)

    def backward(self, view, inputs, output, cotangent, reference):
        gates = view.segment.gates
        if sum(gates) != 1:
            raise ValueError(
                f"SignalTakeAll needs a product of one gate (a sigmoid output) and one signal; the "
                f"{view.segment.describe()} has {sum(gates)} gate factors. Select gated products "
                "only (ja.composites.gated_product) and give other products another rule "
                "(ja.rules.Uniform()).")
        return tuple(jax.numpy.zeros_like(x) if gate else unbroadcast(cotangent, x.shape)
                     for x, gate in zip(inputs, gates))


@dataclasses.dataclass(frozen=True)
class DeepLIFTProduct(Rule):
    """DeepLIFT's rule for ``y = x₁ ⊙ x₂`` (Shrikumar et al. 2016, §2.3.5):
    ``m_{x₁} = m_y · ½(x₂ + x₂⁰)``, ``m_{x₂} = m_y · ½(x₁ + x₁⁰)``, so that
    ``m_{x₁}Δx₁ + m_{x₂}Δx₂ = m_y Δy`` exactly.

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> glu = lambda p, x: (x @ p[0]) * jax.nn.sigmoid(x @ p[1])   # one logit per example
        >>> p = (jnp.ones((2, 1)), jnp.ones((2, 1)))
        >>> x = jnp.array([[1.0, 2.0]])
        >>> C = ja.attribute(glu, p, x, method=ja.DeepLIFT())
        >>> bool(jnp.allclose(C.sum(), glu(p, x)[0, 0] - glu(p, 0 * x)[0, 0]))
        True
    """

    kinds = ("bilinear", "normalise")

    def backward(self, view, inputs, output, cotangent, reference):
        _require_reference(reference, self)
        (x1, x2), (r1, r2) = inputs, tuple(reference_value(r) for r in reference)
        return (unbroadcast(cotangent * 0.5 * (x2 + r2), x1.shape),
                unbroadcast(cotangent * 0.5 * (x1 + r1), x2.shape))


@dataclasses.dataclass(frozen=True)
class HoldScale(Rule):
    """LRP through a normalisation ``y = s ⊙ g(s)`` (LayerNorm, RMSNorm): the scale ``g(s)`` is
    held constant, so all relevance goes to the signal, ``R_s = R_y`` and none through ``g``
    (Ali et al. 2022, "XAI for transformers: better explanations through conservative
    propagation"; Achtibat et al. 2024's identity rule on the normalising scale)."""

    kinds = ("normalise",)

    def backward(self, view, inputs, output, cotangent, reference):
        signal, scale = inputs
        return (unbroadcast(cotangent, signal.shape), jax.numpy.zeros_like(scale))
