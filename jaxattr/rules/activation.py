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

from .base import Rule


@dataclasses.dataclass(frozen=True)
class Guided(Rule):
    """Guided backpropagation: ``g_in = f'(x) · max(g_out, 0)`` — the ReLU's own mask and only
    positive signals (Springenberg et al. 2015)."""

    kinds = ("activation",)

    def backward(self, view, inputs, output, cotangent, reference):
        return jax.vjp(view.fn, *inputs)[1](jnp.maximum(cotangent, 0))


@dataclasses.dataclass(frozen=True)
class Deconv(Rule):
    """DeconvNet: ``g_in = max(g_out, 0)`` — the ReLU applied to the backward signal instead of the
    forward mask (Zeiler & Fergus 2014)."""

    kinds = ("activation",)

    def backward(self, view, inputs, output, cotangent, reference):
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
