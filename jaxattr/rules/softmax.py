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

DeepLIFT through a softmax: :class:`jaxattr.rules.path.PathIntegral`.
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
        return tuple(jnp.zeros_like(x) for x in inputs)
