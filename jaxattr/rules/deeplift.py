"""DeepLIFT's rules beyond Rescale: max operations (max pooling, ``max``/``min`` of tensors) and
RevealCancel.

Elementwise non-linearities use :class:`~jaxattr.rules.activation.Rescale`; linear layers keep
their gradient (multiplier ``W``, paper §2.3.1). This module adds the rule for the ``maxpool``
segments of the engine (``reduce_window_max``, ``reduce_max``, their ``min`` twins, and ``max``/
``min`` of two x-dependent tensors).

**The multiplier of a max.** Three rules, by ``mode`` (:data:`MAXPOOL_MODES`); the default,
``"interpolate"``, is this project's own choice, not the DeepLIFT authors'. The authors'
implementation (kundajelab/deeplift, ``deeplift/layers/pooling.py``, ``MaxPoolDeepLiftMode``)
offers two, both available here by their names:

* ``"gradient"`` (its default): ``m = g`` — the routing at x, ``m_i = Σ_w 1{i wins w at x} m_w``,
  ties to the first maximum. Does not sum to delta when a window's winner changes between x₀
  and x (then the winner's own ``Δx_i ≠ Δy``).
* ``"scaled_gradient"`` (paper 2016, eq. 11: ``Δy`` routed to the element that wins *at x*):
  ``m_i = Σ_w 1{i wins w at x} m_w Δy_w / pc(Δx_i)``, with the authors' pseudocount
  ``pc(t) = t ± 1e-7`` where ``|t| < 5e-8`` (the sign of t, + at 0), else ``t``. It sums to
  delta wherever no winner has ``|Δx_i| < 5e-8``, but divides by the winner's own ``Δx_i``,
  which may be tiny or of the wrong sign while ``Δy`` is not: x = [3, 0], x₀ = [1, 5] gives
  ``Δy = −2``, the winner moved by ``+2``, ``m = −1``; with x₀ = [3 − 1e-6, 5], ``m = −2·10⁶``;
  with x₀ = [3, 5] the winner's ``Δx = 0`` and ``Δy = −2`` is lost (``m = −2·10⁷`` times 0).

``"interpolate"`` keeps summation to delta exactly, without either failure: it interpolates
between the routing at x and the routing at x₀. Let ``g`` and
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
gradient. The same formula covers ``min`` (there ``D ≤ Δy ≤ D₀``). Ties are split equally between
a window's maxima when the windows do not overlap (``reduce_max``, the reshape-and-max pool,
``nn.max_pool`` with window = stride); overlapping windows follow the primitive's derivative
(one element). Ties are common at a constant reference (a zero input gives every position of a
conv layer the same value), and summation to delta holds whichever way they are broken.

Every quantity is computed per output element from the segment's own forward function with
``jax.jvp``/``jax.vjp`` (or, for non-overlapping windows of up to ``MAX_VIEWS`` elements, written
out on the windows' strided views by :func:`interpolated_window_vjp`: the same numbers, faster),
so it is correct per example in a batch (Captum #1276 used the first
example's routing for the whole batch) and for overlapping windows (each input sums the
multipliers of every window that reads it).

**RevealCancel** (Shrikumar et al. 2017, §3.5.3) splits the input difference of a
non-linearity ``y = f(z)`` into its positive and negative parts and credits them separately:

.. math::

    Δy^+ = ½\\,[f(z_0 + Δz^+) − f(z_0)] + ½\\,[f(z_0 + Δz^- + Δz^+) − f(z_0 + Δz^-)]

and symmetrically ``Δy⁻``, with multipliers ``m⁺ = Δy⁺/Δz⁺``, ``m⁻ = Δy⁻/Δz⁻`` (their limits
``½[f'(z₀) + f'(z₀ + Δz^∓)]`` where ``Δz^± ≈ 0``). ``Δz⁺``/``Δz⁻`` come from the dense/conv layer
``z = Wx + b`` that feeds the non-linearity: ``Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻`` (the positive terms of
``Σ w_i Δx_i``), ``Δz⁻ = W⁻Δx⁺ + W⁺Δx⁻``, with the *total* ``Δx`` of the layer's input, as in
kundajelab/deeplift. Two multipliers then flow back into that layer:
``m_x = W⁺ᵀm⁺ + W⁻ᵀm⁻`` where ``Δx > 0``, ``W⁻ᵀm⁺ + W⁺ᵀm⁻`` where ``Δx < 0`` and the mean of
the two where ``Δx = 0``. Summation to delta still holds.

The engine carries one cotangent per variable, so the pair is split across two rules and the
method: :class:`~jaxattr.methods.DeepLIFT` (``rule="reveal_cancel"``) evaluates x and x₀, pairs
every activation region with the dense/conv layer whose output it reads directly (and that nothing
else reads), computes ``m⁺``, ``m⁻`` there (:func:`reveal_cancel_ratios`) and hands them to the
layer with its reference (:class:`SplitRef`); the activation passes its multiplier through
(:class:`RevealCancel` on a :class:`PairedRef`) and the layer splits it
(:class:`RevealCancelLinear`). Activations that are not fed directly by a dense/conv layer (after
a pool, a sum, a reshape, …) fall back to Rescale.

References:
    Shrikumar, Greenside, Shcherbina & Kundaje 2016, "Not just a black box: learning important
    features through propagating activation differences", arXiv:1605.01713 (§2.3.2–2.3.3).
    Shrikumar, Greenside & Kundaje 2017, "Learning important features through propagating
    activation differences", ICML.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .activation import Rescale
from .base import Rule, safe_div
from .pooling import MAX_VIEWS, WinnerTakeAll, from_window_form, window_form, window_views

MAXPOOL_MODES = ("interpolate", "gradient", "scaled_gradient")

#: kundajelab/deeplift's ``NEAR_ZERO_THRESHOLD``: ``scaled_gradient`` divides by
#: ``Δx ± NEAR_ZERO`` where ``|Δx| < NEAR_ZERO / 2``.
NEAR_ZERO = 1e-7


def _require_reference(reference, rule) -> None:
    if reference is None:
        raise ValueError(f"{type(rule).__name__} needs a reference input: use it through "
                         "ja.DeepLIFT(reference=...), which evaluates the reference alongside x.")


@dataclasses.dataclass(frozen=True)
class DeepLIFTMax(Rule):
    """DeepLIFT multiplier of a max (or min) operation.

    ``mode="interpolate"`` (default; jaxattr's own rule): ``m = λ g + (1 − λ) g₀`` with ``g``,
    ``g₀`` the routings at x and at the reference and ``λ = (Δy − g₀·Δx) / (g·Δx − g₀·Δx)``
    clipped to [0, 1] (module docstring); sums to delta exactly, per example, with overlapping
    windows, and every ``m_i ∈ [0, 1]``. The DeepLIFT authors' two modes
    (kundajelab/deeplift ``MaxPoolDeepLiftMode``): ``mode="gradient"``, ``m = g``, the routing
    at x (their default; does not sum to delta when the winner changes), and
    ``mode="scaled_gradient"``, ``m = gᵀ(m_y Δy) / pc(Δx)`` (Shrikumar et al. 2016, eq. 11;
    sums to delta unless a winner's ``|Δx| < 5e-8``, and unbounded where it is small).

    Example:
        >>> import jaxattr as ja
        >>> rule = ja.rules.DeepLIFTMax()          # what ja.DeepLIFT() puts on max pools
        >>> method = ja.DeepLIFT(maxpool="gradient")  # the DeepLIFT authors' default instead
    """

    kinds = ("maxpool",)
    mode: str = "interpolate"

    def __post_init__(self):
        if self.mode not in MAXPOOL_MODES:
            raise ValueError(f"DeepLIFTMax mode must be one of {MAXPOOL_MODES}, got {self.mode!r}")

    def backward(self, view, inputs, output, cotangent, reference):
        if self.mode == "gradient":  # the routing at x, ties to the first maximum
            return WinnerTakeAll().backward(view, inputs, output, cotangent, reference)
        _require_reference(reference, self)
        inputs, reference = tuple(inputs), tuple(reference_value(r) for r in reference)
        if self.mode == "scaled_gradient":  # gᵀ(m_y Δy) / pc(Δx)
            dy = output - view.fn(*reference)
            routed = WinnerTakeAll().backward(view, inputs, output, cotangent * dy, None)
            return tuple(r / pseudocount(x - x0) for r, x, x0 in zip(routed, inputs, reference))
        node = view.segment.nodes[0]
        form = window_form(node, inputs[0]) if len(inputs) == 1 else None
        if form is not None and math.prod(form[0].shape[a] for a in form[1]) <= MAX_VIEWS:
            xr, axes = form  # a max over small windows: the same rule, written out (faster)
            x0r, _ = window_form(node, reference[0])
            m = interpolated_window_vjp(xr, x0r, axes, cotangent)
            return (from_window_form(node, inputs[0], m),)
        deltas = tuple(x - x0 for x, x0 in zip(inputs, reference))
        _, d_x = jax.jvp(view.fn, inputs, deltas)          # g · Δx
        y0, d_0 = jax.jvp(view.fn, reference, deltas)      # f(x₀), g₀ · Δx
        lam = _mixing(output - y0, d_x, d_0).astype(cotangent.dtype)
        at_x = jax.vjp(view.fn, *inputs)[1](cotangent * lam)
        at_ref = jax.vjp(view.fn, *reference)[1](cotangent * (1 - lam))
        return tuple(a + b for a, b in zip(at_x, at_ref))


def pseudocount(t):
    """kundajelab/deeplift's ``pseudocount_near_zero``: ``t + NEAR_ZERO·sign(t)`` (sign(0) = +1)
    where ``|t| < NEAR_ZERO / 2``, else ``t``."""
    near = jnp.abs(t) < NEAR_ZERO / 2
    return t + jnp.where(near, jnp.where(t >= 0, NEAR_ZERO, -NEAR_ZERO), 0.0).astype(t.dtype)


def _mixing(dy, d_x, d_0):
    """``λ = (Δy − D₀) / (D − D₀)`` clipped to [0, 1]; 1 where ``D = D₀``."""
    span = d_x - d_0
    return jnp.clip(jnp.where(span == 0, 1.0, safe_div(dy - d_0, span)), 0.0, 1.0)


def interpolated_window_vjp(xr, x0r, axes, cotangent):
    """:class:`DeepLIFTMax`'s ``m = λ g + (1 − λ) g₀`` applied to ``cotangent`` for
    ``y = max(xr, axes)`` and its reference ``y₀ = max(x0r, axes)``, written out on the windows'
    strided views (:func:`~jaxattr.rules.pooling.window_views`; meant for small windows): ``g``
    is ``1{xr = y} / #{xr = y}`` (ties split equally, as ``reduce_max``'s derivative splits
    them), ``g₀`` the same at ``x0r``. Equal to the rule's ``jvp``/``vjp`` form, and faster on
    XLA's CPU backend: the paper CNN's DeepLIFT at batch 128 went from 1.32× to 1.18× the
    gradient's time (``docs/performance.md`` §2)."""
    (flat, restore), (flat0, _) = window_views(xr, axes), window_views(x0r, axes)
    views = [flat[..., i] for i in range(flat.shape[-1])]
    views0 = [flat0[..., i] for i in range(flat.shape[-1])]
    y, y0 = functools.reduce(jnp.maximum, views), functools.reduce(jnp.maximum, views0)
    hits = [(v == y).astype(v.dtype) for v in views]      # the maxima at x ...
    hits0 = [(w == y0).astype(w.dtype) for w in views0]   # ... and at the reference
    deltas = [v - w for v, w in zip(views, views0)]
    count, count0 = sum(hits), sum(hits0)
    d_x = sum(h * d for h, d in zip(hits, deltas)) / count     # g · Δx
    d_0 = sum(h * d for h, d in zip(hits0, deltas)) / count0   # g₀ · Δx
    lam = _mixing(y - y0, d_x, d_0)
    at_x, at_ref = cotangent * lam / count, cotangent * (1 - lam) / count0
    m = [at_x * h + at_ref * h0 for h, h0 in zip(hits, hits0)]
    return restore(jnp.stack(m, axis=-1)).astype(cotangent.dtype)


# --------------------------------------------------------------------------------------------
# RevealCancel
# --------------------------------------------------------------------------------------------

ID = (("id", 1.0),)
POS = (("pos", 1.0),)


class SplitRef(NamedTuple):
    """Reference of a dense/conv layer's input in RevealCancel mode: the reference ``value`` and,
    per linear segment index that reads it, the ``(m⁺, m⁻)`` ratios of the activation it feeds."""

    value: Any
    ratios: dict


class PairedRef(NamedTuple):
    """Reference of an activation's input whose layer splits the multiplier (RevealCancel)."""

    value: Any


def reference_value(ref):
    """The plain reference array of a (possibly wrapped) reference."""
    return ref.value if isinstance(ref, (SplitRef, PairedRef)) else ref


def split_delta(view, delta, total):
    """``(Δz⁺, Δz⁻)`` of a dense/conv ``view`` for an input difference ``delta``: the positive and
    negative terms of ``Σ_i w_i Δx_i`` (the bias cancels). ``total`` is ``Δz = z(x) − z(x₀)``.

    ``Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻ = W⁺|Δx| + WΔx⁻`` (as ``W⁻ = W − W⁺``) and ``Δz⁻ = Δz − Δz⁺``: two
    convolutions instead of four, and ``z₀ + Δz⁺ + Δz⁻`` is the forward's own ``z``."""
    d_pos = view.z(jnp.abs(delta), POS, ()) + view.z(jnp.minimum(delta, 0), ID, ())
    return d_pos, total - d_pos


def reveal_cancel_ratios(fn, z0, d_pos, d_neg, tolerance: float = 1e-7):
    """RevealCancel multipliers ``(m⁺, m⁻) = (Δy⁺/Δz⁺, Δy⁻/Δz⁻)`` of an elementwise ``fn`` at the
    reference ``z0`` (Shrikumar et al. 2017, eq. in §3.5.3), with their limits where ``|Δz^±| <
    tolerance``."""
    f0, f_p, f_n, f_pn = fn(z0), fn(z0 + d_pos), fn(z0 + d_neg), fn(z0 + d_pos + d_neg)
    dy_pos = 0.5 * (f_p - f0) + 0.5 * (f_pn - f_n)
    dy_neg = 0.5 * (f_n - f0) + 0.5 * (f_pn - f_p)
    slope = lambda at: jax.jvp(fn, (at,), (jnp.ones_like(at),))[1]
    lim_pos = 0.5 * (slope(z0) + slope(z0 + d_neg))
    lim_neg = 0.5 * (slope(z0) + slope(z0 + d_pos))

    def ratio(dy, dz, lim):
        small = jnp.abs(dz) < tolerance
        return jnp.where(small, lim, dy / jnp.where(small, 1.0, dz))

    return ratio(dy_pos, d_pos, lim_pos), ratio(dy_neg, d_neg, lim_neg)


@dataclasses.dataclass(frozen=True)
class RevealCancel(Rule):
    """DeepLIFT RevealCancel on an activation region (module docstring). Paired with the dense/conv
    layer that feeds it (reference wrapped in :class:`PairedRef` by ``ja.DeepLIFT``), it passes its
    multiplier to that layer, which applies ``m⁺``/``m⁻``; otherwise it is Rescale."""

    kinds = ("activation",)
    tolerance: float = 1e-7

    def backward(self, view, inputs, output, cotangent, reference):
        _require_reference(reference, self)
        if isinstance(reference[0], PairedRef):
            return (cotangent,)
        plain = tuple(reference_value(r) for r in reference)
        return Rescale(self.tolerance).backward(view, inputs, output, cotangent, plain)


@dataclasses.dataclass(frozen=True)
class RevealCancelLinear(Rule):
    """The dense/conv half of RevealCancel: given the ``(m⁺, m⁻)`` of the activation it feeds
    (in a :class:`SplitRef`), ``m_x = W⁺ᵀ(g m⁺) + W⁻ᵀ(g m⁻)`` where ``Δx > 0``,
    ``W⁻ᵀ(g m⁺) + W⁺ᵀ(g m⁻)`` where ``Δx < 0``, their mean where ``Δx = 0`` (``g``: the incoming
    multiplier; ``W`` folded with its bias/batch-norm chain). Without ratios: the gradient."""

    kinds = ("dense", "conv")

    def backward(self, view, inputs, output, cotangent, reference):
        (x,) = inputs
        ref = reference[0] if reference is not None else None
        ratios = ref.ratios.get(view.segment.index) if isinstance(ref, SplitRef) else None
        if ratios is None:
            return jax.vjp(view.fn, x)[1](cotangent)
        m_pos, m_neg = cotangent * ratios[0], cotangent * ratios[1]
        # with W⁻ = W − W⁺: up = W⁺ᵀ(m⁺ − m⁻) + Wᵀm⁻, down = Wᵀm⁺ − W⁺ᵀ(m⁺ − m⁻); Wᵀ runs once
        # on m⁺ and m⁻ stacked as a doubled batch
        back_pos = jax.vjp(lambda i: view.z(i, POS, ()), x)[1]
        back = jax.vjp(lambda i: view.z(i, ID, ()), x)[1]
        shared = back_pos(m_pos - m_neg)[0]
        through_w = jax.vmap(lambda m: back(m)[0])(jnp.stack([m_pos, m_neg]))
        up = shared + through_w[1]
        down = through_w[0] - shared
        d = x - ref.value
        return (jnp.where(d > 0, up, jnp.where(d < 0, down, 0.5 * (up + down))),)


__all__ = ["DeepLIFTMax", "MAXPOOL_MODES", "NEAR_ZERO", "pseudocount", "interpolated_window_vjp", "RevealCancel",
           "RevealCancelLinear", "SplitRef", "PairedRef", "reference_value", "split_delta",
           "reveal_cancel_ratios"]
