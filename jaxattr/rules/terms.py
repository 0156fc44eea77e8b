"""Terms, groups, and the one propagation routine every LRP rule shares.

LRP rules only *declare* their parts (Zennit's design, Anders et al. 2021): groups of terms,
each term an input modifier, a weight modifier and a bias modifier; :func:`propagate` does the
rest once for all of them:

.. math::

    R_{in} = \\sum_g c_g \\sum_{t \\in g} s_t\\, x_t \\odot J_t^\\top
        \\left( \\frac{R_{out} \\odot m_g}{\\mathrm{stab}\\left(\\sum_{t\\in g} s_t z_t\\right)} \\right),
    \\qquad z_t = W_t x_t + b_t,

with ``stab(z) = z + ε·sign(z)`` (sign(0) = +1) and ``0/0 = 0``.

**Sharing convolutions.** Every modified weight is a combination of a few *basis* weights:
``W``, ``W⁺``, ``W²`` and ``1`` (with ``W⁻ = W − W⁺``). :func:`propagate` computes ``lin(x_t,
B)`` once per input and basis direction it needs, and each transposed ``Bᵀ(·)`` once per
direction and cotangent, summing every term's share before the product. With ``W`` and ``W⁺``
as the basis, the γ rule (``W + γW⁺`` where ``z > 0``, ``W + γW⁻`` where ``z < 0``) and αβ
(``W⁺``, ``W⁻``) need one extra convolution per layer — ``lin(x, W)`` is the forward pass's own,
which XLA computes once — and two transposed ones, not two and two. Terms on a constant input
(``ones``, the bounds of z^B) are convolved for one row and broadcast over the batch; terms on
the negative part of a non-negative input (after a ReLU) are their bias alone. The results equal
the term-by-term evaluation up to rounding of the order of the machine epsilon times ``|W⁺x|``
(``(W + γW⁻)x`` is computed as ``(1 + γ)Wx − γW⁺x``): 8e-7 relative in float32 on the paper CNN.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

ID = (("id", 1.0),)
NONE: tuple = ()


class Term(NamedTuple):
    """One modified copy of the layer: ``z_t = W_t · in_t + b_t``.

    ``input``: ``"x"``, ``"pos"`` (x⁺), ``"neg"`` (x⁻), ``"ones"``, or a constant (float, or a
    tuple of per-channel floats broadcast over the last axis). ``weight``/``bias``: modifiers
    (see :mod:`jaxattr.engine.layer`); ``()`` as bias means no bias. ``sign``: ±1 in the sum.
    """

    input: Union[str, float, tuple] = "x"
    weight: tuple = ID
    bias: tuple = ID
    sign: float = 1.0


class Group(NamedTuple):
    """Terms sharing one denominator, weighted by ``coef``; ``where``: ``"pos"``/``"neg"`` keeps
    only outputs whose original value is > 0 / < 0 (Gamma)."""

    terms: tuple
    coef: float = 1.0
    where: Optional[str] = None


def stabilize(z, epsilon: float):
    """``z + ε·sign(z)`` with sign(0) = +1 (Zennit's stabiliser)."""
    if epsilon == 0:
        return z
    return z + epsilon * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def safe_div(num, den):
    """``num / den`` with ``0`` where ``den == 0``."""
    zero = den == 0
    return jnp.where(zero, 0.0, num / jnp.where(zero, 1.0, den))


def _input_key(mod, nonneg: bool):
    """The input a term reads, normalised: x⁺ of a non-negative x is x; ``None``: the input is
    zero (x⁻ of a non-negative x, a zero constant) and the term is its bias alone."""
    if nonneg and mod == "pos":
        return "x"
    if nonneg and mod == "neg":
        return None
    if not isinstance(mod, str) and not np.any(np.asarray(mod)):
        return None
    return mod


def _is_constant(key) -> bool:
    return key not in ("x", "pos", "neg")


def _value(key, x):
    """The input ``key`` as an array that broadcasts against ``x``."""
    if key == "x":
        return x
    if key == "pos":
        return jnp.maximum(x, 0)
    if key == "neg":
        return jnp.minimum(x, 0)
    return jnp.asarray(1.0 if key == "ones" else key, x.dtype)


def _ratio(vec: dict, ref: dict) -> Optional[float]:
    """``λ`` with ``vec = λ·ref`` (dicts of non-zero floats), or ``None``."""
    if vec.keys() != ref.keys():
        return None
    k0 = max(ref, key=lambda k: abs(ref[k]))
    lam = vec[k0] / ref[k0]
    ok = all(abs(vec[k] - lam * ref[k]) <= 1e-12 * max(1.0, abs(vec[k])) for k in ref)
    return lam if ok else None


def _basis(vectors: Sequence[dict]) -> list:
    """Directions spanning ``vectors``: the common direction when all are parallel (scaled so
    that W's coefficient, else the first, is 1: ``{"id": 1}`` is the forward's own ``W``), else
    the basis weights they use."""
    first = vectors[0]
    if all(_ratio(v, first) is not None for v in vectors):
        unit = first["id"] if "id" in first else first[min(first)]
        return [{b: c / unit for b, c in first.items()}]
    names = sorted({b for v in vectors for b in v})
    return [{b: 1.0} for b in names]


def _coords(vec: dict, directions: list) -> dict:
    """``vec`` as ``{j: λ_j}`` over ``directions`` (from :func:`_basis`)."""
    if len(directions) == 1:
        return {0: _ratio(vec, directions[0])}
    index = {next(iter(d)): j for j, d in enumerate(directions)}
    return {index[b]: c for b, c in vec.items()}


def _merge(items) -> list:
    """``(direction, cotangent, input, factor)`` items → ``[direction, cotangent, {input:
    factor}]`` with one entry per direction and cotangent up to a scalar (then one transposed
    product serves them all: ``Σ_i f_i x_i ⊙ Bᵀ(λ u) = (Σ_i λ f_i x_i) ⊙ Bᵀ u``)."""
    out: list = []
    for direction, cot, key, factor in items:
        for entry in out:
            lam = _ratio(cot, entry[1]) if entry[0] == direction else None
            if lam is not None:
                entry[2][key] = entry[2].get(key, 0.0) + lam * factor
                break
        else:
            out.append([direction, cot, {key: factor}])
    return out


def _uses(view, groups: Sequence[Group]):
    """The terms as ``(group, input key, sign, {scale: {basis: coef}})``, and each group's
    denominator so far (the terms' biases)."""
    nonneg = view.segment.nonneg_input
    dens: list = [0.0] * len(groups)
    uses = []
    for g, group in enumerate(groups):
        for t in group.terms:
            dens[g] = dens[g] + t.sign * view.bias_term(t.bias)
            key = _input_key(t.input, nonneg)
            if key is None:
                continue
            by_scale = view.expand(t.weight)
            if by_scale:
                uses.append((g, key, t.sign, by_scale))
    return dens, uses


def _transposes(directions: dict, cots: dict) -> list:
    """The transposed products of the backward: the fewer of grouping by (input, direction)
    and by basis weight (``x⊙Wᵀu − h⊙W⁻ᵀu = (x − h)⊙Wᵀu + h⊙W⁺ᵀu``, z^B's bounds)."""
    by_input = _merge((tuple(sorted(directions[k][j].items())), cot, k, 1.0)
                      for (k, j), cot in cots.items())
    by_basis = _merge((((b, 1.0),), cot, k, c)
                      for (k, j), cot in cots.items() for b, c in directions[k][j].items())
    return by_basis if len(by_basis) < len(by_input) else by_input


def propagate(view, x, output, relevance, groups: Sequence[Group], epsilon: float):
    """Shared LRP backward of a layer (see the module docstring for the formula).

    ``view`` is the layer's :class:`~jaxattr.engine.layer.LinearView`, ``x`` its input,
    ``output`` its forward output ``z``, ``relevance`` the relevance of ``z``."""
    dens, uses = _uses(view, groups)
    # forward: lin(input, direction) once per input and direction
    keys = list(dict.fromkeys(key for _, key, _, _ in uses))
    directions = {k: _basis([v for _, key, _, s in uses if key == k for v in s.values()])
                  for k in keys}
    lins = {}
    for k in keys:
        for j, d in enumerate(directions[k]):
            w = view.weight_of(d)
            lins[k, j] = (view.lin_constant(_value(k, x), x, w) if _is_constant(k)
                          else view.lin(_value(k, x), w))
    cots: dict = {}  # (input key, direction index) -> {(group, scale): coefficient}
    for g, k, sign, by_scale in uses:
        for scale, vec in by_scale.items():
            for j, lam in _coords(vec, directions[k]).items():
                dens[g] = dens[g] + sign * view.scaled(scale, lam * lins[k, j])
                slot = cots.setdefault((k, j), {})
                slot[g, scale] = slot.get((g, scale), 0.0) + groups[g].coef * sign * lam
    cots = {kj: {gs: c for gs, c in cot.items() if c != 0} for kj, cot in cots.items()}
    cots = {kj: cot for kj, cot in cots.items() if cot}

    scaled = []
    for group, den in zip(groups, dens):
        s = safe_div(relevance, stabilize(den, epsilon))
        if group.where == "pos":
            s = jnp.where(output > 0, s, 0.0)
        elif group.where == "neg":
            s = jnp.where(output < 0, s, 0.0)
        scaled.append(s)

    # backward: one transposed product per direction and cotangent
    total = 0.0
    for direction, cot, inputs in _transposes(directions, cots):
        u = 0.0
        for (g, scale), coef in cot.items():
            u = u + coef * view.scaled(scale, scaled[g])
        w = view.weight_of(dict(direction))
        back = view.lin_transpose(x, w, u.astype(x.dtype))
        multiplier = sum(f * _value(k, x) for k, f in inputs.items())
        total = total + multiplier * back
    return jnp.zeros_like(x) if isinstance(total, float) else total
