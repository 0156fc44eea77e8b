"""Rules for elementwise activations (and DeepLIFT's rules for the other non-linearities).

References:
    Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks" (DeconvNet).
    Springenberg et al. 2015, "Striving for simplicity: the all convolutional net" (Guided BP).
    Shrikumar et al. 2017, "Learning important features through propagating activation
    differences", ICML (DeepLIFT: Rescale, RevealCancel).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..engine.lenient import is_relu_segment
from .base import Rule


@dataclasses.dataclass(frozen=True)
class Guided(Rule):
    """Guided backpropagation through a ReLU: ``g_in = 1[x > 0] · max(g_out, 0)`` — the ReLU's own
    mask and only positive signals (Springenberg et al. 2015).

    ReLUs only (``jax.nn.relu``, ``max(x, 0)``; see :func:`jaxattr.engine.lenient.is_relu`): any
    other activation region it is attached to passes its true derivative, as in Captum and the
    paper. Leaky ReLU, PReLU and ReLU6 are not ReLUs here."""

    kinds = ("activation",)

    def backward(self, view, inputs, output, cotangent, reference):
        vjp = jax.vjp(view.fn, *inputs)[1]
        return vjp(jnp.maximum(cotangent, 0) if is_relu_segment(view.segment) else cotangent)


@dataclasses.dataclass(frozen=True)
class Deconv(Rule):
    """DeconvNet through a ReLU: ``g_in = max(g_out, 0)`` — the ReLU applied to the backward signal
    instead of the forward mask (Zeiler & Fergus 2014).

    ReLUs only, as :class:`Guided`: any other activation region passes its true derivative (the
    rule used to return ``max(g, 0)`` on tanh, sigmoid or GELU too, dropping their derivative)."""

    kinds = ("activation",)

    def backward(self, view, inputs, output, cotangent, reference):
        if not is_relu_segment(view.segment):
            return jax.vjp(view.fn, *inputs)[1](cotangent)
        return (jnp.maximum(cotangent, 0),)


def _require_reference(reference, rule):
    if reference is None:
        raise ValueError(f"{type(rule).__name__} needs a reference input: use it through "
                         "ja.DeepLIFT(reference=...), which evaluates the reference alongside x.")


@dataclasses.dataclass(frozen=True)
class Rescale(Rule):
    """DeepLIFT Rescale (Shrikumar et al. 2017, §3.5.2): the multiplier of ``y = f(x)`` is

    .. math:: m = \\frac{f(x) - f(x_0)}{x - x_0},

    falling back to the gradient ``f'(x)`` where ``|x − x₀| < tolerance`` (Captum uses 1e-10;
    the default here is a little wider so float32 cancellation cannot blow up)."""

    kinds = ("activation",)
    tolerance: float = 1e-7

    def backward(self, view, inputs, output, cotangent, reference):
        _require_reference(reference, self)
        (x,), (x0,) = inputs, reference
        dx = x - x0
        dy = output - view.fn(x0)
        small = jnp.abs(dx) < self.tolerance
        grad = jax.vjp(view.fn, x)[1](jnp.ones_like(output))[0]
        m = jnp.where(small, grad, dy / jnp.where(small, 1.0, dx))
        return (cotangent * m,)
