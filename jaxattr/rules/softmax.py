"""Rules for a softmax inside the model (the engine's ``softmax`` segments: attention weights).

**AttnLRP** (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation
for transformers", ICML, Proposition 3.1): the deep Taylor decomposition of ``s = softmax(x)``
at ``x`` itself (with its bias term) gives

.. math:: R_{x} = x \\odot \\Big(R_s - s \\odot \\sum_j R_{s_j}\\Big)

(the sum over the softmax's axis), which is ``x ⊙ J_sᵀ(R_s ⊘ s)``: gradient × input of the
relevance ratio. It is not conservative: the softmax's bias term absorbs
``Σ_j R_{s_j} (1 − x_j + Σ_i s_i x_i)``. ``x`` is the softmax's input, before the max shift
(softmax is shift-invariant, the rule is not; the paper and LXT use the input). Entries of ``x``
at ``−∞`` (a mask written into the scores) count as 0, as in LXT.

**CP-LRP** (Ali et al. 2022, "XAI for transformers: better explanations through conservative
propagation", ICML): the attention weights are held constant, so no relevance enters the
softmax (:class:`Constant`), and ``A·V`` sends all of its relevance to ``V``
(:class:`~jaxattr.rules.product.ConstantAttention`).

DeepLIFT through a softmax: :class:`DeepLIFTSoftmax` (DeepLIFT's rules on its primitives, the
default) or :class:`jaxattr.rules.path.PathIntegral` (its Jacobian along the path).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .base import Rule
from .terms import safe_div


@dataclasses.dataclass(frozen=True)
class SoftmaxTaylor(Rule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Proposition 3.1):
    ``R_x = x ⊙ (R_s − s ⊙ Σ_axis R_s)``, computed as ``x ⊙ J_sᵀ(R_s ⊘ s)`` (``0`` where
    ``s = 0``, a masked position), so any axis, mask or layout the segment holds is handled
    by the softmax's own derivative. ``x`` is the segment's input (``−∞`` counts as 0).

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: jax.nn.softmax(x @ p[0], axis=-1) @ p[1]
        >>> p = (jnp.eye(3), jnp.ones((3, 2)))
        >>> R = ja.attribute(f, p, jnp.array([[1.0, 2.0, 3.0]]), method=ja.LRP(
        ...     ja.composites.attn_lrp(0.0)))
    """

    kinds = ("softmax",)

    def backward(self, view, inputs, output, cotangent, reference):
        (x,) = inputs
        grad = jax.vjp(view.fn, x)[1](safe_div(cotangent, output))[0]
        return (jnp.where(jnp.isneginf(x), 0.0, x) * grad,)


@dataclasses.dataclass(frozen=True)
class Constant(Rule):
    """The segment's output is held constant: nothing flows back to its inputs (CP-LRP's
    attention weights, Ali et al. 2022; ``R_x = 0``)."""

    kinds = ("softmax", "activation")

    def backward(self, view, inputs, output, cotangent, reference):
        return (None,) * len(inputs)  # no relevance: symbolic zeros


@dataclasses.dataclass(frozen=True)
class DeepLIFTSoftmax(Rule):
    """DeepLIFT through a softmax by DeepLIFT's own rules on its primitives (Shrikumar et al.
    2017): ``s = e · r`` with ``e = exp(z − c)``, ``S = Σ_axis e``, ``r = 1/S`` and one shift
    ``c`` per row shared by x and the reference (the result does not depend on it; here
    ``c = logsumexp(z)``, so ``e = s`` and ``S = 1`` at x). Rescale on ``exp``
    (``m = Δe/Δz``, the secant, ``e`` where ``Δz = 0``), the exact secant of ``1/S``
    (``m = Δr/ΔS = −1/(S·S₀)``) and §2.3.5's product rule on ``e · r``
    (``m_e = ½(r + r₀)``, ``m_r = ½(e + e₀)``, summed over the axis):

    .. math::

        m_z = \\frac{Δe}{Δz} \\odot \\Big(\\tfrac{1}{2}(r + r_0)\\, m_s
              - \\frac{1}{S S_0} \\sum_{\\text{axis}} \\tfrac{1}{2}(e + e_0)\\, m_s\\Big).

    Each rule sums to delta, so the block does, exactly (no quadrature), at the cost of one
    extra exponential and two sums. Applies to a softmax the engine sees as its primitives
    (``exp``, the sum, ``div``, its max shift and layout changes) without a mask inside the
    segment (Flax masks the scores before the softmax: such a mask is outside it); a softmax
    with a mask between ``exp`` and the sum (``jax.nn.softmax(where=...)``) or written as one
    custom-derivative call falls back to :class:`~jaxattr.rules.PathIntegral`, exact up to its
    quadrature. ``ja.DeepLIFT()`` uses it (``softmax="rules"``, the default);
    ``ja.DeepLIFT(softmax="path")`` takes the path integral everywhere.

    Example:
        >>> import jax, jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: jax.nn.softmax(x @ p[0], axis=-1) @ p[1]
        >>> p, x = (jnp.eye(3), jnp.arange(6.0).reshape(3, 2)), jnp.array([[1.0, 2.0, 3.0]])
        >>> C = ja.attribute(f, p, x, jnp.array([1]), method=ja.DeepLIFT())
        >>> bool(jnp.allclose(C.sum(), f(p, x)[0, 1] - f(p, 0 * x)[0, 1], atol=1e-6))
        True
    """

    kinds = ("softmax",)

    def backward(self, view, inputs, output, cotangent, reference):
        from .deeplift import _require_reference, reference_value
        from .path import PathIntegral

        _require_reference(reference, self)
        denominator = _denominator(view)
        if denominator is None:  # a mask inside the segment, or one opaque call
            return PathIntegral().backward(view, inputs, output, cotangent, reference)
        (z,), z0 = inputs, reference_value(reference[0])
        s = output
        # e₀ = exp(z₀ − logsumexp(z)) = s · exp(z₀ − z); where x and x₀ agree the path stays put
        delta = jnp.where(z == z0, 0.0, z0 - z)
        e0 = jnp.exp(jnp.log(s) + delta)
        k = denominator(e0)  # S₀ (S = 1), per element: its row's sum
        # secant of exp, written without cancellation: (e − e₀)/(z − z₀) = s · expm1(δ)/δ
        safe = jnp.where(delta == 0, 1.0, delta)
        m_exp = jnp.where(delta == 0, s, s * jnp.expm1(delta) / safe)
        g = cotangent
        g_e = 0.5 * (1.0 + 1.0 / k) * g - denominator(0.5 * (s + e0) * g) / k
        return (m_exp * g_e,)


def _denominator(view):
    """``w ↦`` the softmax segment's denominator computed from ``w`` in place of ``exp``'s
    output (the sum over the axis, broadcast back: each element gets its row's sum), or
    ``None`` when the segment is not ``exp``/sum/``div`` without a mask inside."""
    seg = view.segment
    divs = [n for n in seg.nodes if n.prim == "div" and seg.output in n.outs]
    exps = [n for n in seg.nodes if n.prim == "exp"]
    if len(divs) != 1 or not exps or any(n.prim == "select_n" for n in seg.nodes):
        return None
    div = divs[0]
    rest = [n for n in seg.nodes if n.prim != "exp" and n is not div]

    def denominator(w):
        env = {v: w for n in exps for v in n.outs}
        env[seg.inputs[0]] = jnp.zeros_like(w)  # read only by the unused max shift
        return view.run(rest, env)[div.ins[1]]

    return denominator
