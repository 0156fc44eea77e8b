"""Rules for the product of two x-dependent tensors (the engine's ``bilinear`` segments:
elementwise — gates of GRUs/LSTMs, GLUs, ``a * sigmoid(b)`` — or contracted by ``dot_general``
— attention's ``QKᵀ`` and ``AV``).

**DeepLIFT** (Shrikumar et al. 2016, §2.3.5, eqs 17–18). For ``y = x₁ x₂``,

.. math::

    Δy = x_1 x_2 − x_1^0 x_2^0
       = \\big(x_2^0 + ½Δx_2\\big)\\, Δx_1 + \\big(x_1^0 + ½Δx_1\\big)\\, Δx_2 ,

so the multipliers ``m_{x₁} = x₂⁰ + ½Δx₂ = ½(x₂ + x₂⁰)`` and ``m_{x₂} = ½(x₁ + x₁⁰)`` keep
summation-to-delta exact (:class:`DeepLIFTProduct`): each factor is credited with its own
difference times the other factor's mean over the two end points. A contraction
``y = Σ_k a_k b_k`` is a sum of such products, so its multipliers are the §2.3.5 ones summed
over the contracted axis: ``m_a = J_a(b̄)ᵀ m_y`` with ``b̄ = ½(b + b⁰)``, the transposed product
with the other operand replaced by its mean (and ``m_b`` likewise), exact again.

**LRP** (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for
transformers", ICML): the *uniform* rule splits the relevance of a
product of two inputs equally, ``R_{x₁} = R_{x₂} = ½ R_y`` (:class:`Uniform`). It conserves, and
is what the LRP presets (:data:`jaxattr.composites.LRP_BASE`) put on every product. A matrix
product ``y_j = Σ_k a_{jk} b_{k}`` is a sum of products (their Proposition 3.3): the ε-rule
distributes ``R_y`` over the products ``a_{jk} b_k`` and the uniform rule halves each, so
``R_a = ½ a ⊙ J_aᵀ(R_y ⊘ stab(y))`` and ``R_b = ½ b ⊙ J_bᵀ(R_y ⊘ stab(y))``.
CP-LRP (Ali et al. 2022) holds the attention weights of ``A·V`` constant
(:class:`ConstantAttention`): the product is then linear in ``V``, which takes all of it by the
ε-rule.

**LSTM/GRU gates** (Arras, Montavon, Müller & Samek 2017, "Explaining recurrent neural network
predictions in sentiment analysis", WASSA): in a product of a *gate* (a sigmoid output, possibly
as ``1 − z``) and a *signal*, the gate only decides how much of the signal passes, so the signal
takes all the relevance, ``R_signal = R_y``, ``R_gate = 0`` (:class:`SignalTakeAll`; the engine
marks the gate factors, :attr:`jaxattr.engine.Segment.gates`).

**Normalisation** (the engine's ``normalise`` segments, ``y = s ⊙ g(s)`` with ``g`` through a
reduction: LayerNorm's ``(x − μ) ⊙ rsqrt(σ² + ε)``, RMSNorm; or ``y = s / d(s)``:
``(x − μ) / sqrt(σ² + ε)``, an L2 normalisation ``x / ‖x‖``): LRP holds the normalising scale
constant, ``R_s = R_y``, ``R_{g} = 0`` (:class:`HoldScale`; the rule of AttnLRP and CP-LRP for
LayerNorm, Ali et al. 2022, Achtibat et al. 2024); DeepLIFT splits ``Δy`` exactly along the path
that moves the scale first (:class:`DeepLIFTNormalise`), which stays well-conditioned where the
reference's scale is ``rsqrt(ε)``.

A rule-based method whose composite gives a product no rule raises an error instead of taking
the product's gradient (which, fed relevance, returns ``R·x₂``: not relevance).
"""

from __future__ import annotations

import dataclasses

import jax

from .base import Rule, unbroadcast
from .terms import safe_div, stabilize
from .deeplift import _require_reference, reference_value


def _split(view, inputs, output, cotangent, epsilon, shares):
    """``share_i · x_i ⊙ J_iᵀ(R ⊘ stab(y))`` for each input ``i`` (``share 0``: nothing, a
    symbolic zero): the ε-rule over the products that a contraction sums, each product's
    relevance split by ``shares``."""
    scaled = safe_div(cotangent, stabilize(output, epsilon))
    grads = jax.vjp(view.fn, *inputs)[1](scaled)  # a held input's: unused, dropped by XLA
    return tuple(share * x * g if share else None
                 for share, x, g in zip(shares, inputs, grads))


def _normalise_multipliers(view, cotangent, inputs, reference, symmetric: bool):
    """DeepLIFT multipliers of a normalisation ``y = s ⊙ g`` or ``y = s / d``: the split that
    moves the scale first (``m_s`` at ``g``, ``m_g`` at ``s₀``) or §2.3.5's symmetric one (at
    ``½(g + g₀)`` and ``½(s + s₀)``). A division is the same split for ``g = 1/d``: the signal's
    partner is ``d`` or the harmonic mean of ``d`` and ``d₀`` (``1/d̃ = ½(1/d + 1/d₀)``), and the
    division's derivative in ``d`` (``−s̃/d²``) times ``d/d₀`` is ``1/d``'s exact secant
    ``Δ(1/d)/Δd = −1/(d d₀)``."""
    (signal, scale), (signal0, scale0) = inputs, tuple(reference_value(r) for r in reference)
    if not symmetric:
        with_scale = scale
    elif view.segment.reciprocal:
        with_scale = 2.0 * scale * scale0 / (scale + scale0)
    else:
        with_scale = 0.5 * (scale + scale0)
    with_signal = 0.5 * (signal + signal0) if symmetric else signal0
    m_signal, m_scale = _partner_multipliers(view, cotangent, (signal, scale),
                                             (with_scale, with_signal))
    return m_signal, (m_scale * (scale / scale0) if view.segment.reciprocal else m_scale)


def _partner_multipliers(view, cotangent, inputs, partners):
    """DeepLIFT multipliers of a bilinear product ``y = f(x₁, x₂)``: ``m_{x₁} = J_{x₁}ᵀ m_y``
    with ``x₂`` at ``partners[0]`` and ``m_{x₂}`` with ``x₁`` at ``partners[1]``. Exact for
    summation to delta whenever ``Δy = f(Δx₁, partner₀) + f(partner₁, Δx₂)``, which fixes
    the partners of a path (:class:`DeepLIFTProduct`, :class:`DeepLIFTNormalise`)."""
    (x1, x2), (with1, with2) = inputs, partners
    m1 = jax.vjp(lambda a: view.fn(a, with1), x1)[1](cotangent)[0]
    m2 = jax.vjp(lambda b: view.fn(with2, b), x2)[1](cotangent)[0]
    return m1, m2


@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """AttnLRP's uniform rule for a product of two tensors (Achtibat et al. 2024, "AttnLRP:
    attention-aware layer-wise relevance propagation for transformers", ICML).

    Elementwise, ``y = x₁ ⊙ x₂`` (their Proposition 3.2): ``R_{x₁} = R_{x₂} = ½ R_y``.
    Contracted, ``y = Σ_k x₁ₖ x₂ₖ`` (``dot_general``: attention's ``QKᵀ`` and ``AV``;
    Proposition 3.3): the ε-rule over the sum, then ½/½ on each product,

    .. math:: R_{x_i} = \\tfrac12\\, x_i \\odot J_{x_i}^\\top \\big(R_y \\oslash (y + ε\\,\\mathrm{sign}(y))\\big).

    Relevance is conserved (up to what ε absorbs)."""

    kinds = ("bilinear",)
    epsilon: float = 1e-6

    def backward(self, view, inputs, output, cotangent, reference):
        if view.segment.elementwise:
            half = 0.5 * cotangent
            return tuple(unbroadcast(half, x.shape) for x in inputs)
        return _split(view, inputs, output, cotangent, self.epsilon, (0.5, 0.5))


@dataclasses.dataclass(frozen=True)
class ConstantAttention(Rule):
    """CP-LRP's rule for attention ``y = A·V`` (Ali et al. 2022, "XAI for transformers: better
    explanations through conservative propagation", ICML): the attention weights ``A`` (the
    operands that are softmax outputs, :attr:`Segment.held`) are held constant, so the product
    is linear in the other operand, which takes all the relevance by the ε-rule,

    .. math:: R_V = V \\odot J_V^\\top \\big(R_y \\oslash (y + ε\\,\\mathrm{sign}(y))\\big), \\qquad R_A = 0.

    Only for products with a softmax operand (the composites select them with
    ``"attention"``); on any other product it raises."""

    kinds = ("bilinear",)
    epsilon: float = 1e-6

    def backward(self, view, inputs, output, cotangent, reference):
        held = view.segment.held
        if not held or len(held) == len(inputs):
            raise ValueError(f"ConstantAttention needs a product with exactly one softmax operand, "
                             f"got the {view.segment.describe()} (softmax operands: {held}). "
                             "Select it with 'attention'.")
        shares = tuple(0.0 if i in held else 1.0 for i in range(len(inputs)))
        if view.segment.elementwise:
            return tuple(unbroadcast(cotangent, x.shape) if s else None
                         for s, x in zip(shares, inputs))
        return _split(view, inputs, output, cotangent, self.epsilon, shares)


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
        return tuple(None if gate else unbroadcast(cotangent, x.shape)  # None: no relevance
                     for x, gate in zip(inputs, gates))


@dataclasses.dataclass(frozen=True)
class DeepLIFTProduct(Rule):
    """DeepLIFT's rule for a product of two tensors (Shrikumar et al. 2016, §2.3.5).

    Elementwise, ``y = x₁ ⊙ x₂``: ``m_{x₁} = m_y · ½(x₂ + x₂⁰)``, ``m_{x₂} = m_y · ½(x₁ + x₁⁰)``,
    so that ``m_{x₁}Δx₁ + m_{x₂}Δx₂ = m_y Δy`` exactly. Contracted (``dot_general``), the same
    multipliers summed over the contracted axis: ``m_{x₁} = J_{x₁}(x̄₂)ᵀ m_y``, the transposed
    product with the other operand at its mean ``x̄₂ = ½(x₂ + x₂⁰)`` (and ``m_{x₂}`` likewise);
    exact again, as ``Δ(x₁x₂) = Δx₁ x̄₂ + x̄₁ Δx₂`` for any bilinear product.

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
        if view.segment.kind == "normalise":
            return _normalise_multipliers(view, cotangent, inputs, reference, symmetric=True)
        (x1, x2), (r1, r2) = inputs, tuple(reference_value(r) for r in reference)
        return _partner_multipliers(view, cotangent, (x1, x2), (0.5 * (x2 + r2), 0.5 * (x1 + r1)))


@dataclasses.dataclass(frozen=True)
class DeepLIFTNormalise(Rule):
    """DeepLIFT through a normalisation ``y = s ⊙ g`` (LayerNorm: ``s = x − μ``,
    ``g = rsqrt(σ² + ε)``; RMSNorm: ``s = x``), split exactly along the path that first moves
    the scale at the reference's signal, then the signal at the input's scale:

    .. math::

        Δy = g \\odot Δs + s_0 \\odot Δg, \\qquad m_s = g, \\quad m_g = \\textstyle\\sum s_0\\, m_y

    (``m_g`` summed over the normalised axis), so ``m_s Δs + m_g Δg = m_y Δy`` exactly, like
    §2.3.5's symmetric split (:class:`DeepLIFTProduct`, ``m_s = ½(g + g₀)``), which is the
    average of this path and the one that moves the signal first. The symmetric split is
    ill-conditioned where the reference's input to the normalisation is constant — the zero
    reference after bias-free layers, as in ConvNeXt or an MLP-Mixer: there ``s₀ = 0``,
    ``g₀ = rsqrt(ε)`` (1000 for ε = 1e-6), and the signal is credited about 500× ``g`` while
    the scale takes as much back. On the zoo's ConvNeXt and MLP-Mixer (zero reference) the
    contributions were 3e7–2e8 times the logit's change, and in float32 their sum missed it by
    0.9–4 times itself; with this split 3–35 times, summing to delta within 3e-7 in float32.
    At ``s₀ = 0`` it is the scale held at x (AttnLRP's and CP-LRP's LayerNorm treatment), here
    exact. ``ja.DeepLIFT(normalise="symmetric")`` uses §2.3.5's split instead. A normalisation
    written as a division, ``y = s / d`` (``(x − μ) / sqrt(σ² + ε)``, ``x / ‖x‖``), is the same
    split for ``g = 1/d``, with ``g``'s exact secant ``Δg/Δd = −1/(d d₀)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: (x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)) @ p
        >>> p, x = jnp.arange(6.0).reshape(3, 2), jnp.array([[1.0, -2.0, 0.5]])
        >>> C = ja.attribute(f, p, x, jnp.array([1]), method=ja.DeepLIFT())
        >>> bool(jnp.allclose(C.sum(), f(p, x)[0, 1] - f(p, 0 * x)[0, 1], atol=1e-5))
        True
    """

    kinds = ("normalise",)

    def backward(self, view, inputs, output, cotangent, reference):
        _require_reference(reference, self)
        return _normalise_multipliers(view, cotangent, inputs, reference, symmetric=False)


@dataclasses.dataclass(frozen=True)
class HoldScale(Rule):
    """LRP through a normalisation ``y = s ⊙ g(s)`` (LayerNorm, RMSNorm): the scale ``g(s)`` is
    held constant, so all relevance goes to the signal, ``R_s = R_y`` and none through ``g``
    (Ali et al. 2022, "XAI for transformers: better explanations through conservative
    propagation"; Achtibat et al. 2024's identity rule on the normalising scale)."""

    kinds = ("normalise",)

    def backward(self, view, inputs, output, cotangent, reference):
        signal, scale = inputs
        return (unbroadcast(cotangent, signal.shape), None)  # None: no relevance
