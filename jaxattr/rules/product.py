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

A rule-based method whose composite gives a product no rule raises an error instead of taking
the product's gradient (which, fed relevance, returns ``R·x₂``: not relevance).
"""

from __future__ import annotations

import dataclasses

from .base import Rule
from .deeplift import _require_reference, reference_value


@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """AttnLRP's uniform rule for ``y = x₁ ⊙ x₂``: ``R_{x₁} = R_{x₂} = ½ R_y`` (Achtibat et al.
    2024): each factor gets half of the product's relevance, so relevance is conserved."""

    kinds = ("bilinear",)

    def backward(self, view, inputs, output, cotangent, reference):
        half = 0.5 * cotangent
        return (half, half)


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

    kinds = ("bilinear",)

    def backward(self, view, inputs, output, cotangent, reference):
        _require_reference(reference, self)
        (x1, x2), (r1, r2) = inputs, tuple(reference_value(r) for r in reference)
        return (cotangent * 0.5 * (x2 + r2), cotangent * 0.5 * (x1 + r1))
