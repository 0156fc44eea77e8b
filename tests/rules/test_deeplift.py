"""DeepLIFT (Rescale + max-pool rule) against an independent float64 numpy oracle.

The oracle below shares no code with ``jaxattr``: it runs each network forward at x and at the
reference, then propagates multipliers backward layer by layer from the paper's formulas
(Shrikumar et al. 2016: affine ``m = W`` eq. 6–9, Rescale ``m = Δy/Δx`` eq. 15 with the gradient
where ``Δx ≈ 0``) and, for max pools, loops over windows with explicit argmaxes: the routing at x
and at x₀ mixed by ``λ = (Δy − Δx_{j*}) / (Δx_{i*} − Δx_{j*})`` (jaxattr's ``"interpolate"``, see
``jaxattr.rules.deeplift``), or the DeepLIFT authors' two modes as kundajelab/deeplift defines
them (``MaxPoolDeepLiftMode``): ``"gradient"``, ``m_w`` to x's winner, and ``"scaled_gradient"``,
``m_w Δy_w`` to x's winner divided by its ``Δx`` plus their pseudocount (±1e-7 where
``|Δx| < 5e-8``).
Networks are 1-D (NWC) so overlapping windows (width 3, stride 2) are easy to write by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.evaluation.checks import summation_to_delta

# ---------------------------------------------------------------------------------------------
# networks: a spec (tuple of layers) + numpy float64 params
# ---------------------------------------------------------------------------------------------
# ("dense", out) | ("conv", out, width) VALID stride 1 | ("act", name) | ("pool", width, stride)
# | ("flatten",)

ACTS = {
    "relu": (lambda z, a: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(float)),
    "prelu": (lambda z, a: np.where(z >= 0, z, a * z), lambda z, a: np.where(z >= 0, 1.0, a)),
    "tanh": (lambda z, a: np.tanh(z), lambda z, a: 1 - np.tanh(z) ** 2),
    "sigmoid": (lambda z, a: 1 / (1 + np.exp(-z)), lambda z, a: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    "softplus": (lambda z, a: np.log1p(np.exp(z)), lambda z, a: 1 / (1 + np.exp(-z))),
}
JAX_ACTS = {
    "relu": lambda z, a: jax.nn.relu(z),
    "prelu": lambda z, a: jnp.where(z >= 0, z, a * z),
    "tanh": lambda z, a: jnp.tanh(z),
    "sigmoid": lambda z, a: jax.nn.sigmoid(z),
    "softplus": lambda z, a: jax.nn.softplus(z),
}

MLP_A = (("dense", 6), ("act", "relu"), ("dense", 5), ("act", "tanh"), ("dense", 4),
         ("act", "sigmoid"), ("dense", 3))
MLP_B = (("dense", 6), ("act", "prelu"), ("dense", 5), ("act", "softplus"), ("dense", 3))
# overlapping max pool (3, 2) on conv outputs, then PReLU; a second conv, tanh, dense
CONV_OVERLAP = (("conv", 3, 3), ("pool", 3, 2), ("act", "prelu"), ("conv", 4, 2), ("act", "tanh"),
                ("flatten",), ("dense", 3))
# ReLU before non-overlapping pools: windows tie at 0 (summation must hold whatever the tie rule)
CONV_RELU_POOL = (("conv", 4, 3), ("act", "relu"), ("pool", 2, 2), ("conv", 3, 2), ("act", "relu"),
                  ("pool", 3, 2), ("flatten",), ("dense", 3))
NETS = {"mlp_a": (MLP_A, (5,)), "mlp_b": (MLP_B, (5,)), "conv_overlap": (CONV_OVERLAP, (13, 2)),
        "conv_relu_pool": (CONV_RELU_POOL, (16, 2))}


def init(spec, in_shape, seed):
    rng = np.random.default_rng(seed)
    shape, params = tuple(in_shape), []
    for layer in spec:
        kind = layer[0]
        if kind == "dense":
            params.append({"w": rng.normal(size=(shape[-1], layer[1])) / np.sqrt(shape[-1]) * 1.5,
                           "b": rng.normal(size=layer[1]) * 0.5})
            shape = (layer[1],)
        elif kind == "conv":
            fan = layer[2] * shape[-1]
            params.append({"w": rng.normal(size=(layer[2], shape[-1], layer[1])) / np.sqrt(fan) * 1.5,
                           "b": rng.normal(size=layer[1]) * 0.5})
            shape = (shape[0] - layer[2] + 1, layer[1])
        elif kind == "act":
            params.append({"a": rng.uniform(0.05, 0.4, size=shape[-1])} if layer[1] == "prelu" else {})
        elif kind == "pool":
            params.append({})
            shape = ((shape[0] - layer[1]) // layer[2] + 1, shape[1])
        elif kind == "flatten":
            params.append({})
            shape = (int(np.prod(shape)),)
    return params


# --------------------------------------------------------------------------------------------- oracle

def np_forward(spec, params, x):
    """Inputs of every layer, then the output."""
    acts = [x]
    for layer, p in zip(spec, params):
        kind = layer[0]
        if kind == "dense":
            x = x @ p["w"] + p["b"]
        elif kind == "conv":
            width = layer[2]
            n = x.shape[1] - width + 1
            x = np.stack([np.einsum("bjc,jco->bo", x[:, t:t + width], p["w"]) for t in range(n)], 1) + p["b"]
        elif kind == "act":
            x = ACTS[layer[1]][0](x, p.get("a"))
        elif kind == "pool":
            width, stride = layer[1], layer[2]
            n = (x.shape[1] - width) // stride + 1
            x = np.stack([x[:, t * stride:t * stride + width].max(1) for t in range(n)], 1)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        acts.append(x)
    return acts


def _positive_terms(kind, p, layer, d):
    """RevealCancel's Δz⁺, Δz⁻ of a dense/conv layer: sums of the positive / negative terms
    w·Δx (written term by term, not as W⁺Δx⁺ + W⁻Δx⁻)."""
    if kind == "dense":
        terms = d[:, :, None] * p["w"][None]  # (b, in, out)
        return np.maximum(terms, 0).sum(1), np.minimum(terms, 0).sum(1)
    width = layer[2]
    n = d.shape[1] - width + 1
    terms = np.stack([d[:, t:t + width, :, None] * p["w"][None] for t in range(n)], 1)  # b,t,j,c,o
    return np.maximum(terms, 0).sum((2, 3)), np.minimum(terms, 0).sum((2, 3))


def np_deeplift(spec, params, x, x0, target, maxpool="interpolate", rule="rescale"):
    acts, refs = np_forward(spec, params, x), np_forward(spec, params, x0)
    m = np.zeros_like(acts[-1])
    m[np.arange(len(target)), target] = 1.0
    split = None  # (m⁺, m⁻) waiting for the dense/conv layer below a RevealCancel activation
    for i in reversed(range(len(spec))):
        layer, p, a, r = spec[i], params[i], acts[i], refs[i]
        kind = layer[0]
        if kind in ("dense", "conv") and split is not None:
            m_pos, m_neg = split
            split = None
            d = a - r
            if kind == "dense":
                w = p["w"][None]  # (1, in, out)
                sel = lambda mp, mn: (np.where(w * d[:, :, None] > 0, w, 0) * mp[:, None]
                                      + np.where(w * d[:, :, None] < 0, w, 0) * mn[:, None]).sum(-1)
                m = sel(m_pos, m_neg)
                m = np.where(d == 0, 0.5 * (p["w"] @ (m_pos + m_neg).T).T, m)
            else:
                width = layer[2]
                out = np.zeros_like(a)
                for t in range(m_pos.shape[1]):
                    wd = d[:, t:t + width, :, None] * p["w"][None]  # b,j,c,o
                    w = np.broadcast_to(p["w"][None], wd.shape)
                    contrib = (np.where(wd > 0, w, 0) * m_pos[:, t, None, None, :]
                               + np.where(wd < 0, w, 0) * m_neg[:, t, None, None, :]).sum(-1)
                    half = 0.5 * np.einsum("bo,jco->bjc", m_pos[:, t] + m_neg[:, t], p["w"])
                    out[:, t:t + width] += np.where(d[:, t:t + width] == 0, half, contrib)
                m = out
        elif kind == "dense":
            m = m @ p["w"].T
        elif kind == "conv":
            width = layer[2]
            out = np.zeros_like(a)
            for t in range(m.shape[1]):
                out[:, t:t + width] += np.einsum("bo,jco->bjc", m[:, t], p["w"])
            m = out
        elif kind == "act":
            f, df = ACTS[layer[1]]
            fa = lambda v: f(v, p.get("a"))
            if rule == "reveal_cancel" and i > 0 and spec[i - 1][0] in ("dense", "conv"):
                below = spec[i - 1]
                dp, dn = _positive_terms(below[0], params[i - 1], below, acts[i - 1] - refs[i - 1])
                dy_p = 0.5 * (fa(r + dp) - fa(r)) + 0.5 * (fa(r + dp + dn) - fa(r + dn))
                dy_n = 0.5 * (fa(r + dn) - fa(r)) + 0.5 * (fa(r + dp + dn) - fa(r + dp))
                lim_p = 0.5 * (df(r, p.get("a")) + df(r + dn, p.get("a")))
                lim_n = 0.5 * (df(r, p.get("a")) + df(r + dp, p.get("a")))
                rp = np.where(np.abs(dp) < 1e-7, lim_p, dy_p / np.where(np.abs(dp) < 1e-7, 1, dp))
                rn = np.where(np.abs(dn) < 1e-7, lim_n, dy_n / np.where(np.abs(dn) < 1e-7, 1, dn))
                split = (m * rp, m * rn)
                continue
            d = a - r
            small = np.abs(d) < 1e-7
            m = m * np.where(small, df(a, p.get("a")),
                             (fa(a) - fa(r)) / np.where(small, 1.0, d))
        elif kind == "pool":
            width, stride = layer[1], layer[2]
            out = np.zeros_like(a)
            for b in range(a.shape[0]):
                for t in range(m.shape[1]):
                    for c in range(a.shape[2]):
                        span = slice(t * stride, t * stride + width)
                        win, win0 = a[b, span, c], r[b, span, c]
                        i_x, i_0 = int(np.argmax(win)), int(np.argmax(win0))
                        dy = win[i_x] - win0[i_0]
                        if maxpool == "gradient":
                            out[b, t * stride + i_x, c] += m[b, t, c]
                            continue
                        if maxpool == "scaled_gradient":  # divided by pc(Δx) below
                            out[b, t * stride + i_x, c] += m[b, t, c] * dy
                            continue
                        d_x, d_0 = win[i_x] - win0[i_x], win[i_0] - win0[i_0]
                        lam = 1.0 if d_x == d_0 else np.clip((dy - d_0) / (d_x - d_0), 0, 1)
                        out[b, t * stride + i_x, c] += lam * m[b, t, c]
                        out[b, t * stride + i_0, c] += (1 - lam) * m[b, t, c]
            if maxpool == "scaled_gradient":
                d = a - r
                near = np.abs(d) < 0.5e-7
                out = out / (d + np.where(near, np.where(d >= 0, 1e-7, -1e-7), 0.0))
            m = out
        elif kind == "flatten":
            m = m.reshape(a.shape)
    return (x - x0) * m


# --------------------------------------------------------------------------------------------- jax

_APPLY = {}


def jax_apply(spec):
    """One apply function per spec (so ja.explain's cache is reused across tests)."""
    if spec in _APPLY:
        return _APPLY[spec]

    def apply(params, x):
        for layer, p in zip(spec, params):
            kind = layer[0]
            if kind == "dense":
                x = x @ p["w"] + p["b"]
            elif kind == "conv":
                x = jax.lax.conv_general_dilated(x, p["w"], (1,), "VALID",
                                                 dimension_numbers=("NWC", "WIO", "NWC")) + p["b"]
            elif kind == "act":
                x = JAX_ACTS[layer[1]](x, p.get("a"))
            elif kind == "pool":
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, layer[1], 1),
                                          (1, layer[2], 1), "VALID")
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
        return x

    _APPLY[spec] = apply
    return apply


def setup(name, batch=4, seed=0):
    spec, in_shape = NETS[name]
    params = init(spec, in_shape, seed)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(batch,) + in_shape)
    x0 = rng.normal(size=(batch,) + in_shape) * 0.7
    return spec, params, x, x0


def to_jax(params):
    return jax.tree_util.tree_map(jnp.asarray, params)


# --------------------------------------------------------------------------------------------- tests

def fig1_apply(params, x):
    h = jax.nn.relu(x[:, 0] + 2.0 * x[:, 1] + 2.0)
    return (0.1 + 0.2 * h)[:, None]


def test_fig1_toy_exact_numbers():
    """Paper Fig. 1: gradient 0 for both inputs; DeepLIFT −0.4/3 and −0.8/3, summing to −0.4."""
    x = jnp.array([[-1.0, -1.0]])
    grad = ja.attribute(fig1_apply, {}, x, method=ja.Gradient())
    np.testing.assert_array_equal(np.asarray(grad), [[0.0, 0.0]])
    dl = ja.attribute(fig1_apply, {}, x, method=ja.DeepLIFT(reference=0.0))
    np.testing.assert_allclose(np.asarray(dl), [[-0.4 / 3, -0.8 / 3]], rtol=1e-6)
    np.testing.assert_allclose(float(dl.sum()), -0.4, rtol=1e-6)
    with jax.enable_x64(True):
        dl64 = ja.attribute(fig1_apply, {}, jnp.array([[-1.0, -1.0]], jnp.float64),
                            method=ja.DeepLIFT(reference=0.0))
        np.testing.assert_allclose(np.asarray(dl64), [[-0.4 / 3, -0.8 / 3]], rtol=1e-12)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("name", ["mlp_a", "mlp_b", "conv_overlap"])
def test_matches_oracle(name, rule):
    spec, params, x, x0 = setup(name)
    with jax.enable_x64(True):
        target = np.asarray(jax_apply(spec)(to_jax(params), jnp.asarray(x))).argmax(-1)
        got = ja.attribute(jax_apply(spec), to_jax(params), jnp.asarray(x), jnp.asarray(target),
                           ja.DeepLIFT(reference=np.asarray(x0), rule=rule))
        want = np_deeplift(spec, params, x, x0, target, rule=rule)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)


def test_gradient_maxpool_mode_matches_oracle_and_breaks_summation():
    """maxpool="gradient" (kundajelab's default) routes through x's winner only; where the
    winner changes between x₀ and x it does not sum to delta, the default does."""
    spec, params, x, x0 = setup("conv_overlap", batch=6)
    f = jax_apply(spec)
    with jax.enable_x64(True):
        p, xj = to_jax(params), jnp.asarray(x)
        target = np.asarray(f(p, xj)).argmax(-1)
        got = ja.attribute(f, p, xj, jnp.asarray(target), ja.DeepLIFT(np.asarray(x0), maxpool="gradient"))
        np.testing.assert_allclose(np.asarray(got), np_deeplift(spec, params, x, x0, target, "gradient"),
                                   rtol=1e-10, atol=1e-10)
        assert float(summation_to_delta(f, p, xj, got, np.asarray(x0), target).error.max()) > 1e-3


def test_scaled_gradient_maxpool_mode_matches_oracle_and_sums_to_delta():
    """maxpool="scaled_gradient" (kundajelab's other mode, paper 2016 eq. 11) on overlapping
    windows: equal to the numpy oracle of its definition, and it sums to delta here (no winner
    has |Δx| < 5e-8)."""
    spec, params, x, x0 = setup("conv_overlap", batch=6)
    f = jax_apply(spec)
    with jax.enable_x64(True):
        p, xj = to_jax(params), jnp.asarray(x)
        target = np.asarray(f(p, xj)).argmax(-1)
        method = ja.DeepLIFT(np.asarray(x0), maxpool="scaled_gradient")
        got = ja.attribute(f, p, xj, jnp.asarray(target), method)
        want = np_deeplift(spec, params, x, x0, target, "scaled_gradient")
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)
        interpolate = np_deeplift(spec, params, x, x0, target)
        assert np.abs(want - interpolate).max() > 1e-3  # the winner changes: the modes differ
        assert float(summation_to_delta(f, p, xj, got, np.asarray(x0), target).error.max()) < 1e-10


@pytest.mark.parametrize("x0, want", [
    # mode -> multipliers m = C / Δx where Δx ≠ 0, C (the contributions) otherwise
    ([1.0, 5.0], {"interpolate": [3 / 7, 4 / 7], "gradient": [1.0, 0.0],
                  "scaled_gradient": [-1.0, 0.0]}),
    ([3.0 - 1e-6, 5.0], {"interpolate": [3 / (5 + 1e-6), 1 - 3 / (5 + 1e-6)], "gradient": [1.0, 0.0],
                         "scaled_gradient": [-2e6, 0.0]}),
])
def test_max_modes_on_the_winner_that_moved_the_wrong_way(x0, want):
    """Why ``"interpolate"`` is the default: y = max(x₁, x₂) at x = (3, 0). The winner at x (x₁)
    moved by +2 from x₀ = (1, 5) while Δy = −2: ``scaled_gradient`` gives it m = −1 (−2·10⁶
    when it moved by 1e-6), ``gradient`` does not sum to delta, ``interpolate`` sums to delta with
    multipliers in [0, 1] (λ = (Δy − Δx₂)/(Δx₁ − Δx₂) = 3/7 of x's routing at x₀ = (1, 5))."""
    f = lambda p, x: jnp.max(x, axis=-1, keepdims=True)
    with jax.enable_x64(True):
        x, ref = jnp.array([[3.0, 0.0]]), jnp.array([x0])
        dy = 3.0 - max(x0)
        for mode, m in want.items():
            c = np.asarray(ja.attribute(f, {}, x, jnp.array([0]), ja.DeepLIFT(ref, maxpool=mode)))[0]
            got = c / np.asarray(x - ref)[0]
            np.testing.assert_allclose(got, m, rtol=1e-9)  # 3 − (3 − 1e-6) ≠ 1e-6 exactly
            assert (abs(c.sum() - dy) < 1e-9) == (mode != "gradient"), (mode, c, dy)


def test_scaled_gradient_loses_delta_where_the_winner_did_not_move():
    """x = (3, 0), x₀ = (3, 5): the winner's Δx = 0, so ``scaled_gradient``'s Δy = −2 is divided
    by the pseudocount 1e-7 and multiplied by Δx = 0 — lost; ``interpolate`` gives x₂ all of it
    (λ = 3/5: m = (0.6, 0.4), contributions (0, −2))."""
    f = lambda p, x: jnp.max(x, axis=-1, keepdims=True)
    with jax.enable_x64(True):
        x, ref = jnp.array([[3.0, 0.0]]), jnp.array([[3.0, 5.0]])
        scaled = ja.attribute(f, {}, x, jnp.array([0]), ja.DeepLIFT(ref, maxpool="scaled_gradient"))
        interp = ja.attribute(f, {}, x, jnp.array([0]), ja.DeepLIFT(ref))
    np.testing.assert_allclose(np.asarray(scaled), [[0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(np.asarray(interp), [[0.0, -2.0]], rtol=1e-12)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("ref, rule", [("zero", "rescale"), ("random", "rescale"),
                                       ("random", "reveal_cancel")])
def test_summation_to_delta(name, ref, rule):
    spec, params, x, x0 = setup(name, batch=5, seed=3)
    x0 = np.zeros_like(x) if ref == "zero" else x0
    f = jax_apply(spec)
    with jax.enable_x64(True):
        p, xj = to_jax(params), jnp.asarray(x)
        for target in range(3):
            t = jnp.full((len(x),), target)
            c = ja.attribute(f, p, xj, t, ja.DeepLIFT(reference=np.asarray(x0), rule=rule))
            check = summation_to_delta(f, p, xj, c, np.asarray(x0), t)
            assert float(check.error.max()) < 1e-5, check


def test_reveal_cancel_min_example():
    """Shrikumar et al. 2017, Fig. 3: ``min(x1, x2) = x1 − ReLU(x1 − x2)``, reference 0. Rescale
    credits the whole minimum to one input; RevealCancel splits it equally."""

    def f(p, x):
        return x[:, :1] - jax.nn.relu(x @ jnp.array([[1.0], [-1.0]]))

    x = jnp.array([[3.0, 1.0], [1.0, 4.0]])
    t = jnp.zeros(2, jnp.int32)
    rescale = ja.attribute(f, {}, x, t, ja.DeepLIFT(0.0))
    np.testing.assert_allclose(np.asarray(rescale), [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)
    rc = ja.attribute(f, {}, x, t, ja.DeepLIFT(0.0, rule="reveal_cancel"))
    np.testing.assert_allclose(np.asarray(rc), [[0.5, 0.5], [0.5, 0.5]], atol=1e-6)
    rows = ja.engine.audit(f, {}, x, ja.DeepLIFT(rule="reveal_cancel"))
    assert [r.rule for r in rows if r.kind in ("dense", "activation")] == [
        "RevealCancelLinear()", "RevealCancel(tolerance=1e-07)"]


def test_summation_to_delta_paper_cnn_2d():
    """The bundled 2-D CNN (ReLU before reshape-and-max pools: ties at 0 in most windows, and at
    the zero reference every window of the first pool ties)."""
    from jaxattr.models.paper_cnn import small_paper_cnn

    model = small_paper_cnn()
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), jnp.float64)
        rng = np.random.default_rng(1)  # numpy weights: flax's init costs ~15 s of compiling here
        shapes = jax.eval_shape(model.init, jax.random.key(1), x)
        params = jax.tree_util.tree_map(
            lambda s: jnp.asarray(rng.normal(size=s.shape) * (0.1 if len(s.shape) == 1 else
                                                               1.2 / np.sqrt(np.prod(s.shape[:-1])))),
            shapes)
        ref = np.array([0.0, 0.0, 0.5, 0.3]).reshape(4, 1, 1, 1) * np.ones((4, 8, 8, 1))
        c = ja.attribute(model.apply, params, x, method=ja.DeepLIFT(reference=ref))
        assert float(summation_to_delta(model.apply, params, x, c, ref).error.max()) < 1e-5


@pytest.mark.parametrize("pool,size", [("reshape", 6), ((2, 2), 6), ((3, 3), 6), ((2, 2), 7)])
def test_window_max_written_out(pool, size, monkeypatch):
    """DeepLIFTMax computes non-overlapping windows from strided views
    (``interpolated_window_vjp``) instead of ``jvp``/``vjp`` of the pool: the same numbers, ties
    at x and at the reference split equally; on a size the windows do not tile (VALID drops the
    tail) it still sums to delta and gives the dropped tail nothing."""
    def apply(p, x):
        h = jnp.round(jax.nn.relu(jnp.einsum("bhwc,cd->bhwd", x, p["w"])) * 2) / 2  # many ties
        if pool == "reshape":
            b, hh, ww, c = h.shape
            h = h.reshape(b, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        else:
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, *pool, 1), (1, *pool, 1),
                                      "VALID")
        return h.reshape(h.shape[0], -1) @ p["v"]

    width = 2 if pool == "reshape" else pool[0]
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        p = {"w": jnp.asarray(rng.normal(size=(2, 3))),
             "v": jnp.asarray(rng.normal(size=((size // width) ** 2 * 3, 4)))}
        x = jnp.asarray(rng.normal(size=(3, size, size, 2)))
        ref = jnp.asarray(rng.normal(size=(1, size, size, 2))).round()
        target = jnp.array([0, 1, 3])
        fast = ja.attribute(apply, p, x, target, ja.DeepLIFT(reference=ref))
        assert float(summation_to_delta(apply, p, x, fast, ref, target).error.max()) < 1e-9
        if size % width:
            assert float(jnp.abs(fast[:, -1]).max()) == 0 == float(jnp.abs(fast[:, :, -1]).max())
            return
        monkeypatch.setattr(ja.rules.deeplift, "MAX_VIEWS", 0)  # every pool through jvp/vjp
        # (a new reference array: a method holding an array is cached by identity)
        slow = ja.attribute(apply, p, x, target, ja.DeepLIFT(reference=ref + 0))
        np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-12, atol=1e-12)


def test_batch_equals_per_example():
    """Captum #1276: the max-pool routing of the first example was used for the whole batch."""
    spec, params, x, _ = setup("conv_overlap", batch=5, seed=7)
    f, p = jax_apply(spec), to_jax(params)
    x = x.astype(np.float32)
    method = ja.DeepLIFT(reference=lambda v: 0.8 * jnp.sin(3.0 * v))  # a different x₀ per example
    target = jnp.array([0, 1, 2, 1, 0])
    batch = ja.attribute(f, p, jnp.asarray(x), target, method)
    for i in range(len(x)):
        single = ja.attribute(f, p, jnp.asarray(x[i:i + 1]), target[i:i + 1], method)
        np.testing.assert_allclose(np.asarray(batch[i]), np.asarray(single[0]), rtol=1e-5, atol=1e-6)
    # and the batch result is the oracle's, example by example
    want = np_deeplift(spec, params, x.astype(np.float64), 0.8 * np.sin(3.0 * x.astype(np.float64)),
                       np.asarray(target))
    np.testing.assert_allclose(np.asarray(batch), want, rtol=1e-4, atol=1e-5)


def test_max_of_two_tensors_is_the_paper_maxout_rule():
    """For a maxout unit ``y_j = max(a_j, b_j)``, ``a = W₁x + b₁``, ``b = W₂x + b₂``, the rule equals
    the paper's eq. 14 exactly: the multiplier of each piece is the fraction of the straight path
    x₀ → x on which it is the maximum. ``d(t) = a_j − b_j`` is affine along the path, from
    ``d₀`` to ``d₁``, so ``a_j`` wins on the fraction ``φ_j = 1{d₀, d₁ ≥ 0}`` when d keeps its
    sign and ``φ_j = d₁ / (d₁ − d₀)`` (if ``d₁ > 0``) or ``−d₀ / (d₁ − d₀)`` (if ``d₀ > 0``) when it
    changes; then ``C = Δx ⊙ Σ_j v_{jt} (φ_j W₁[:, j] + (1 − φ_j) W₂[:, j])`` in closed form."""

    def maxout(p, x):
        return jnp.maximum(x @ p["w1"] + p["b1"], x @ p["w2"] + p["b2"]) @ p["v"]

    rng = np.random.default_rng(5)
    q = {k: rng.normal(size=s) for k, s in
         (("w1", (4, 6)), ("b1", (6,)), ("w2", (4, 6)), ("b2", (6,)), ("v", (6, 2)))}
    x, x0 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    t = np.array([0, 1, 0])
    d1 = (x @ q["w1"] + q["b1"]) - (x @ q["w2"] + q["b2"])
    d0 = (x0 @ q["w1"] + q["b1"]) - (x0 @ q["w2"] + q["b2"])
    crossing = np.where(d1 > 0, d1, -d0) / np.where(d1 == d0, 1.0, d1 - d0)
    phi = np.where(np.sign(d1) == np.sign(d0), (d1 > 0).astype(float), crossing)
    assert 0.05 < np.mean((phi > 0) & (phi < 1)) < 0.95  # some pieces switch on the path, some not
    vt = q["v"][:, t].T  # (batch, 6)
    want = (x - x0) * ((vt * phi) @ q["w1"].T + (vt * (1 - phi)) @ q["w2"].T)
    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(jnp.asarray, q)
        dl = ja.attribute(maxout, p, jnp.asarray(x), jnp.asarray(t), ja.DeepLIFT(reference=x0))
        np.testing.assert_allclose(np.asarray(dl), want, rtol=1e-10, atol=1e-10)
        assert float(summation_to_delta(maxout, p, jnp.asarray(x), dl, x0, jnp.asarray(t))
                     .error.max()) < 1e-10


def test_reference_equal_to_x_gives_zero_and_finite():
    """Δx = 0 everywhere: the gradient fallback keeps multipliers finite; contributions are 0."""
    spec, params, x, _ = setup("conv_overlap")
    x = x.astype(np.float32)
    c = ja.attribute(jax_apply(spec), to_jax(params), jnp.asarray(x), method=ja.DeepLIFT(reference=x))
    assert np.all(np.isfinite(np.asarray(c)))
    np.testing.assert_array_equal(np.asarray(c), 0.0)


class TestReferences:
    @pytest.fixture
    def net(self):
        spec, params, x, x0 = setup("conv_overlap", batch=3, seed=11)
        return jax_apply(spec), to_jax(params), jnp.asarray(x, jnp.float32), x0.astype(np.float32)

    def test_shapes_agree(self, net):
        f, p, x, x0 = net
        t = jnp.array([0, 1, 2])
        ex = x0[0]
        full = ja.attribute(f, p, x, t, ja.DeepLIFT(np.broadcast_to(ex, x.shape).copy()))
        for ref in (ex, ex[None], lambda v: jnp.broadcast_to(jnp.asarray(ex), v.shape)):
            np.testing.assert_allclose(np.asarray(ja.attribute(f, p, x, t, ja.DeepLIFT(ref))),
                                       np.asarray(full), rtol=1e-6, atol=1e-6)
        # a scalar and a per-channel vector broadcast like numpy
        chan = np.array([0.3, -0.2], np.float32)
        a = ja.attribute(f, p, x, t, ja.DeepLIFT(chan))
        b = ja.attribute(f, p, x, t, ja.DeepLIFT(np.broadcast_to(chan, x.shape).copy()))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)

    def test_average_references(self, net):
        f, p, x, x0 = net
        t = jnp.array([2, 0, 1])
        refs = np.stack([x0[0], np.zeros_like(x0[0]), x0[1] * 0.5])  # (K, *example)
        avg = ja.attribute(f, p, x, t, ja.DeepLIFT(refs, average_references=True))
        singles = [ja.attribute(f, p, x, t, ja.DeepLIFT(r)) for r in refs]
        np.testing.assert_allclose(np.asarray(avg), np.mean(singles, 0), rtol=1e-5, atol=1e-6)
        check = summation_to_delta(f, p, x, avg, refs, t, average_references=True)
        assert float(check.error.max()) < 1e-4
        # per-example stacks (K, *x.shape) work too
        per = np.broadcast_to(refs[:, None], (3,) + x.shape).copy()
        avg2 = ja.attribute(f, p, x, t, ja.DeepLIFT(per, average_references=True))
        np.testing.assert_allclose(np.asarray(avg2), np.asarray(avg), rtol=1e-5, atol=1e-6)

    def test_target_none_is_argmax_and_fixed_across_references(self, net):
        f, p, x, x0 = net
        refs = np.stack([x0[0], x0[1]])
        t = jnp.argmax(f(p, x), -1)
        a = ja.attribute(f, p, x, None, ja.DeepLIFT(refs, average_references=True))
        b = ja.attribute(f, p, x, t, ja.DeepLIFT(refs, average_references=True))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


class TestErrors:
    def test_wrong_shape(self):
        spec, params, x, _ = setup("mlp_a")
        f, p = jax_apply(spec), to_jax(params)
        x = jnp.asarray(x, jnp.float32)
        with pytest.raises(ValueError, match="does not broadcast"):
            ja.attribute(f, p, x, method=ja.DeepLIFT(reference=np.zeros((3, 5), np.float32)))
        with pytest.raises(ValueError, match="average_references=True"):
            ja.attribute(f, p, x, method=ja.DeepLIFT(reference=np.zeros((2,) + x.shape, np.float32)))
        with pytest.raises(ValueError, match=r"\(K, ...\)"):
            ja.attribute(f, p, x, method=ja.DeepLIFT(np.zeros((2, 1, 1, 1, 5)), average_references=True))

    @pytest.mark.parametrize("bad", [np.nan, np.inf, np.array([0.0, np.nan]), [1.0, float("nan")]])
    def test_nan_reference(self, bad):
        with pytest.raises(ValueError, match="NaN or Inf"):
            ja.DeepLIFT(reference=bad)

    def test_nan_from_callable_outside_jit(self):
        m = ja.DeepLIFT(reference=lambda v: v * np.nan)
        with pytest.raises(ValueError, match="NaN or Inf"):
            m.references(np.ones((2, 3), np.float32))

    @pytest.mark.parametrize("kwargs, match", [
        (dict(rule="linear"), "rule must be"),
        (dict(maxpool="mean"), "maxpool must be"),
        (dict(reference=0.0, average_references=True), "leading axis"),
        (dict(reference="zeros"), "must be a number"),
    ])
    def test_bad_parameters(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            ja.DeepLIFT(**kwargs)

    def test_rule_needs_reference(self):
        f = lambda p, x: jnp.max(x.reshape(x.shape[0], 2, 2), axis=2)
        comp = ja.composites.Composite((("maxpool", ja.rules.DeepLIFTMax()),))
        with pytest.raises(ValueError, match="needs a reference"):
            ja.attribute(f, {}, jnp.ones((1, 4)), method=ja.LRP(comp))


def test_hashable_and_cached():
    ref = np.zeros(5, np.float32)
    a, b = ja.DeepLIFT(ref), ja.DeepLIFT(ref)
    assert a == b and hash(a) == hash(b)
    assert ja.DeepLIFT(np.zeros(5)) != a  # arrays compare by identity
    listed = ja.DeepLIFT([0.0, 1.0])
    assert isinstance(listed.reference, np.ndarray) and isinstance(hash(listed), int)
    f = jax_apply(MLP_A)
    assert ja.explain(f, a) is ja.explain(f, b)


@pytest.mark.parametrize("layout", ["leading", "transposed", "mixed"])
def test_shared_reference_matches_full_batch_evaluation(layout):
    """A reference shared by the batch is evaluated on one example and broadcast; a model whose
    x-dependent values do not all carry the batch as their leading axis (here ``h`` transposed
    and back) must fall back to evaluating the whole batch. A model that mixes examples
    (``h − Σ_batch h``) is refused before either (``jaxattr.engine.batch``)."""

    def f(p, x):
        h = jnp.tanh(x @ p["w"] + p["b"])
        if layout == "transposed":
            h = jnp.tanh(h.T).T
        if layout == "mixed":
            h = h - 0.1 * h.sum(0)
        h = jax.lax.reduce_window(h[..., None], -jnp.inf, jax.lax.max, (1, 3, 1), (1, 2, 1), "VALID")
        return h.reshape(h.shape[0], -1) @ p["v"]

    rng = np.random.default_rng(2)
    p = {k: jnp.asarray(rng.normal(size=shape), jnp.float32)
         for k, shape in (("w", (4, 7)), ("b", (7,)), ("v", (3, 2)))}
    x = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    ref = np.full(4, 0.3, np.float32)
    if layout == "mixed":
        with pytest.raises(ja.BatchCouplingError, match="reduces over the batch axis 0"):
            ja.attribute(f, p, x, method=ja.DeepLIFT(ref))
        return
    for rule in ("rescale", "reveal_cancel"):
        shared = ja.attribute(f, p, x, method=ja.DeepLIFT(ref, rule=rule))
        full = ja.attribute(f, p, x, method=ja.DeepLIFT(np.broadcast_to(ref, x.shape).copy(), rule=rule))
        np.testing.assert_allclose(np.asarray(shared), np.asarray(full), rtol=1e-5, atol=1e-6)


def test_reveal_cancel_convolutions():
    """RevealCancel on ReLU(conv(x) + b): the forward at x, the reference's forward on one row
    (shared reference), Δz⁺ = W⁺|Δx| + WΔx⁻ (two; Δz⁻ = Δz − Δz⁺ costs none), and back
    W⁺ᵀ(m⁺ − m⁻) plus Wᵀ on m⁺ and m⁻ stacked as one doubled batch: six convolutions (before
    sharing W⁻ = W − W⁺: four for Δz± and two transposed ones on doubled batches)."""
    import re

    def f(p, x):
        h = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(h + p["b"]).reshape(x.shape[0], -1) @ p["d"]

    k = jax.random.split(jax.random.key(0), 3)
    p = {"w": jax.random.normal(k[0], (3, 3, 8, 6)), "b": jnp.ones(6),
         "d": jax.random.normal(k[1], (6 * 36, 3))}
    x = jax.random.normal(k[2], (2, 6, 6, 8))
    method = ja.DeepLIFT(rule="reveal_cancel")
    hlo = jax.jit(lambda p, x: ja.attribute(f, p, x, method=method)).lower(p, x).compile()
    batches = re.findall(r"= f32\[(\d+),[^ ]* convolution\(", hlo.as_text())
    assert sorted(batches) == ["1", "2", "2", "2", "2", "4"], batches
