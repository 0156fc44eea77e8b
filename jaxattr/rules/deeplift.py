"""DeepLIFT's rules for max operations (max pooling, ``max``/``min`` of tensors).

Elementwise non-linearities use :class:`~jaxattr.rules.activation.Rescale`; linear layers keep
their gradient (multiplier ``W``, paper §2.3.1). This module adds the rule for the ``maxpool``
segments of the engine (``reduce_window_max``, ``reduce_max``, their ``min`` twins, and ``max``/
``min`` of two x-dependent tensors).

**The multiplier of a max.** For ``y = max_{i ∈ window} x_i`` the paper (Shrikumar et al. 2016,
eq. 11) routes ``Δy`` to the element that wins *at x*: ``m_i = 1{x_i = y} Δy / Δx_i``. That sums
to delta, but divides by the winner's own ``Δx_i``, which may be zero or of the wrong sign while
``Δy`` is not (x = [3, 0], x₀ = [1, 5]: ``Δy = −2``, the winner moved by ``+2``, ``m = −1``).
kundajelab/deeplift keeps the plain gradient (``MaxPoolDeepLiftMode.gradient``), which does not
sum to delta.

Here the multiplier interpolates between the routing at x and the routing at x₀. Let ``g`` and
``g₀`` be the max's gradients (its routings, ties split as the primitive's own derivative splits
them) at x and at x₀, and ``D = g·Δx``, ``D₀ = g₀·Δx`` the window's Δx read through each
routing. For a max, ``D₀ ≤ Δy ≤ D`` always (``x_{j*} − y₀ ≤ y − y₀ ≤ y − x₀_{i*}``), so

.. math::

    m = λ\\, g + (1 − λ)\\, g_0, \\qquad λ = \\frac{Δy − D_0}{D − D_0} ∈ [0, 1]

gives ``Σ_i m_i Δx_i = Δy`` exactly, never divides by a small ``Δx`` (``λ`` is clipped to
[0, 1]; where ``D = D₀`` the two routings agree on Δx and ``λ = 1``), and every ``m_i`` lies in
[0, 1]. It is the paper's maxout rule (eq. 14: the fraction of the straight path from x₀ to x on
which each element is the maximum) whenever the window's winner changes at most once along that
path, which is always the case for ``max(a, b)`` of two tensors; otherwise it is that rule
restricted to the two end points' winners. Where the winner is the same at x and x₀ it is the
gradient. The same formula covers ``min`` (there ``D ≤ Δy ≤ D₀``).

Every quantity is computed per output element from the segment's own forward function with
``jax.jvp``/``jax.vjp``, so it is correct per example in a batch (Captum #1276 used the first
example's routing for the whole batch) and for overlapping windows (each input sums the
multipliers of every window that reads it).

References:
    Shrikumar, Greenside, Shcherbina & Kundaje 2016, "Not just a black box: learning important
    features through propagating activation differences", arXiv:1605.01713 (§2.3.2–2.3.3).
    Shrikumar, Greenside & Kundaje 2017, "Learning important features through propagating
    activation differences", ICML.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .base import Rule

MAXPOOL_MODES = ("interpolate", "gradient")


def _require_reference(reference, rule) -> None:
    if reference is None:
        raise ValueError(f"{type(rule).__name__} needs a reference input: use it through "
                         "ja.DeepLIFT(reference=...), which evaluates the reference alongside x.")


@dataclasses.dataclass(frozen=True)
class DeepLIFTMax(Rule):
    """DeepLIFT multiplier of a max (or min) operation.

    ``mode="interpolate"`` (default): ``m = λ g + (1 − λ) g₀`` with ``g``, ``g₀`` the routings at x
    and at the reference and ``λ = (Δy − g₀·Δx) / (g·Δx − g₀·Δx)`` (module docstring); sums to
    delta exactly, per example, with overlapping windows. ``mode="gradient"``: the routing at x
    only (kundajelab/deeplift's default; does not sum to delta when the winner changes).

    Example:
        >>> import jaxattr as ja
        >>> rule = ja.rules.DeepLIFTMax()          # what ja.DeepLIFT() puts on max pools
        >>> method = ja.DeepLIFT(maxpool="gradient")  # kundajelab's choice instead
    """

    kinds = ("maxpool",)
    mode: str = "interpolate"

    def __post_init__(self):
        if self.mode not in MAXPOOL_MODES:
            raise ValueError(f"DeepLIFTMax mode must be one of {MAXPOOL_MODES}, got {self.mode!r}")

    def backward(self, view, inputs, output, cotangent, reference):
        if self.mode == "gradient":
            return jax.vjp(view.fn, *inputs)[1](cotangent)
        _require_reference(reference, self)
        inputs, reference = tuple(inputs), tuple(reference)
        deltas = tuple(x - x0 for x, x0 in zip(inputs, reference))
        _, d_x = jax.jvp(view.fn, inputs, deltas)          # g · Δx
        y0, d_0 = jax.jvp(view.fn, reference, deltas)      # f(x₀), g₀ · Δx
        dy = output - y0
        span = d_x - d_0
        same = span == 0
        lam = jnp.where(same, 1.0, (dy - d_0) / jnp.where(same, 1.0, span))
        lam = jnp.clip(lam, 0.0, 1.0).astype(cotangent.dtype)
        at_x = jax.vjp(view.fn, *inputs)[1](cotangent * lam)
        at_ref = jax.vjp(view.fn, *reference)[1](cotangent * (1 - lam))
        return tuple(a + b for a, b in zip(at_x, at_ref))


__all__ = ["DeepLIFTMax", "MAXPOOL_MODES"]
