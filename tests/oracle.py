"""Independent float64 numpy oracles for the attribution tests.

Nothing here imports ``jaxattr``: networks, forward passes and every backward rule are written
from the papers' formulas (Bach et al. 2015; Montavon et al. 2017/2019; Zennit's rule
definitions; Springenberg et al. 2015; Zeiler & Fergus 2014; Shrikumar et al. 2017;
Sundararajan et al. 2017) so that the engine is checked against code it shares nothing with.

A network is a *spec* (a hashable tuple of layer descriptions, no weights) plus a list of
weights ``[(W, b), ...]`` for its dense/conv layers, in order:

* ``("dense", out)``                  z = x @ W + b, W: (in, out)
* ``("conv", out, "SAME"|"VALID")``   3x3 stride 1, NHWC input, HWIO kernel (flax ``nn.Conv``)
* ``("relu",)``, ``("tanh",)``
* ``("maxpool",)``, ``("avgpool",)``  2x2 windows, stride 2, VALID
* ``("flatten",)``                    C-order reshape to (batch, -1)

The same spec is available as plain jax (:func:`jax_apply`) and as a Flax Linen module
(:func:`linen_model`); both are built once per spec so ``ja.explain``'s cache is reused.

Test files load it by path (robust under ``--import-mode=importlib``, no conftest needed)::

    _spec = importlib.util.spec_from_file_location("jaxattr_tests_oracle", <tests>/oracle.py)

and register it in ``sys.modules`` under that name so every test file shares one module (and one
set of cached apply functions).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

K = 3  # conv kernel size
NORM_EPS = 1e-6  # stabiliser of the proportional split at sums / average pools


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------

def init_weights(spec, in_shape, seed, bias_scale=0.3, zero_bias=False):
    """Seeded float64 weights for ``spec`` on inputs of shape ``in_shape`` (without batch)."""
    rng = np.random.default_rng(seed)
    shape = tuple(in_shape)
    weights = []
    for layer in spec:
        kind = layer[0]
        if kind == "dense":
            fan_in = shape[-1]
            w = rng.normal(size=(fan_in, layer[1])) / np.sqrt(fan_in) * 1.2
            b = np.zeros(layer[1]) if zero_bias else rng.normal(size=layer[1]) * bias_scale
            weights.append((w, b))
            shape = (layer[1],)
        elif kind == "conv":
            h, w_, c = shape
            fan_in = K * K * c
            w = rng.normal(size=(K, K, c, layer[1])) / np.sqrt(fan_in) * 1.2
            b = np.zeros(layer[1]) if zero_bias else rng.normal(size=layer[1]) * bias_scale
            weights.append((w, b))
            if layer[2] == "VALID":
                h, w_ = h - K + 1, w_ - K + 1
            shape = (h, w_, layer[1])
        elif kind in ("maxpool", "avgpool"):
            shape = (shape[0] // 2, shape[1] // 2, shape[2])
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
    return weights


def _pads(padding):
    return (0, 0) if padding == "VALID" else ((K - 1) // 2, K - 1 - (K - 1) // 2)


def conv_forward(x, w, b, padding):
    lo, hi = _pads(padding)
    xp = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    n, hp, wp, c = xp.shape
    ho, wo = hp - K + 1, wp - K + 1
    patches = np.empty((n, ho, wo, K, K, c))
    for a in range(K):
        for bb in range(K):
            patches[:, :, :, a, bb, :] = xp[:, a:a + ho, bb:bb + wo, :]
    z = np.einsum("nijabc,abcd->nijd", patches, w)
    return z + b


def conv_transpose(g, w, x_shape, padding):
    """Adjoint of ``x -> conv_forward(x, w, 0, padding)`` applied to ``g``."""
    lo, hi = _pads(padding)
    n, h, wd, c = x_shape
    ho, wo = g.shape[1], g.shape[2]
    dpatch = np.einsum("nijd,abcd->nijabc", g, w)
    dxp = np.zeros((n, h + lo + hi, wd + lo + hi, c))
    for a in range(K):
        for bb in range(K):
            dxp[:, a:a + ho, bb:bb + wo, :] += dpatch[:, :, :, a, bb, :]
    return dxp[:, lo:lo + h, lo:lo + wd, :]


def lin(layer, x, w, b):
    if layer[0] == "dense":
        return x @ w + b
    return conv_forward(x, w, b, layer[2])


def lin_t(layer, g, w, x_shape):
    if layer[0] == "dense":
        return g @ w.T
    return conv_transpose(g, w, x_shape, layer[2])


def _windows(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c)


def maxpool(x):
    return _windows(x).max(axis=(2, 4))


def maxpool_route(x, g):
    """Gradient of the 2x2 max pool: ``g`` to the maximum of each window; where several entries
    tie, all of it to the first in row-major window order (as ``jax.grad`` of ``reduce_window``
    and PyTorch; jaxattr's ``WinnerTakeAll``)."""
    n, h, w, c = x.shape
    win = _windows(x).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
    first = np.argmax(win == win.max(axis=-1, keepdims=True), axis=-1)
    mask = np.eye(4)[first].reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return (mask * g[:, :, None, :, None, :]).reshape(x.shape)


def avgpool(x):
    return _windows(x).mean(axis=(2, 4))


def upsample(g, x_shape):
    n, h, w, c = x_shape
    return np.broadcast_to(g[:, :, None, :, None, :], (n, h // 2, 2, w // 2, 2, c)).reshape(x_shape)


def forward(spec, weights, x):
    """All activations: ``acts[0] = x``, ``acts[k + 1]`` = output of layer k."""
    acts = [np.asarray(x, dtype=np.float64)]
    wi = iter(weights)
    for layer in spec:
        a = acts[-1]
        kind = layer[0]
        if kind in ("dense", "conv"):
            w, b = next(wi)
            out = lin(layer, a, w, b)
        elif kind == "relu":
            out = np.maximum(a, 0.0)
        elif kind == "tanh":
            out = np.tanh(a)
        elif kind == "maxpool":
            out = maxpool(a)
        elif kind == "avgpool":
            out = avgpool(a)
        elif kind == "flatten":
            out = a.reshape(a.shape[0], -1)
        else:
            raise ValueError(kind)
        acts.append(out)
    return acts


def logits(spec, weights, x):
    return forward(spec, weights, x)[-1]


def seed(out, target, scale_by_logit, output_relu=False):
    """One-hot on ``target``; times the logit (``scale_by_logit``), through a ReLU first
    (``output_relu``: iNNvestigate's Deep Taylor wraps the outputs in a ReLU)."""
    onehot = np.zeros_like(out)
    onehot[np.arange(out.shape[0]), target] = 1.0
    value = np.maximum(out, 0.0) if output_relu else out
    return onehot * value if scale_by_logit else onehot


def _backward(spec, weights, acts, cot, linear_fn, act_fn, maxpool_fn=None, avgpool_fn=None):
    """Walk the layers backwards; ``linear_fn(k, layer, x, w, b, g)`` and ``act_fn(kind, x, g)``
    say what dense/conv layers and elementwise non-linearities do."""
    lin_idx = [i for i, layer in enumerate(spec) if layer[0] in ("dense", "conv")]
    g = cot
    for i in reversed(range(len(spec))):
        layer, x = spec[i], acts[i]
        kind = layer[0]
        if kind in ("dense", "conv"):
            k = lin_idx.index(i)
            w, b = weights[k]
            g = linear_fn(k, layer, x, w, b, g)
        elif kind in ("relu", "tanh"):
            g = act_fn(kind, x, g)
        elif kind == "maxpool":
            g = (maxpool_fn or maxpool_route)(x, g)
        elif kind == "avgpool":
            g = avgpool_fn(x, g) if avgpool_fn else upsample(g, x.shape) / 4.0
        elif kind == "flatten":
            g = g.reshape(x.shape)
    return g


def _grad_linear(k, layer, x, w, b, g):
    return lin_t(layer, g, w, x.shape)


def _act_grad(kind, x, g):
    if kind == "relu":
        return g * (x > 0)
    return g * (1.0 - np.tanh(x) ** 2)


def target_of(out, target):
    return out.argmax(-1) if target is None else np.broadcast_to(np.asarray(target), out.shape[:1])


# --------------------------------------------------------------------------------------------
# gradient family
# --------------------------------------------------------------------------------------------

def gradient(spec, weights, x, target=None):
    acts = forward(spec, weights, x)
    t = target_of(acts[-1], target)
    return _backward(spec, weights, acts, seed(acts[-1], t, False), _grad_linear, _act_grad)


def guided_backprop(spec, weights, x, target=None, scale_by_logit=False):
    """Springenberg et al.: through a ReLU the signal is ``relu(g) * (x > 0)``. Seed: one-hot,
    or one-hot × the target logit (``scale_by_logit``, iNNvestigate's convention)."""
    acts = forward(spec, weights, x)
    t = target_of(acts[-1], target)
    act = lambda kind, a, g: np.maximum(g, 0.0) * (a > 0)
    return _backward(spec, weights, acts, seed(acts[-1], t, scale_by_logit), _grad_linear, act)


def deconvnet(spec, weights, x, target=None, scale_by_logit=False):
    """Zeiler & Fergus: through a ReLU the signal is ``relu(g)``, forward mask ignored."""
    acts = forward(spec, weights, x)
    t = target_of(acts[-1], target)
    act = lambda kind, a, g: np.maximum(g, 0.0)
    return _backward(spec, weights, acts, seed(acts[-1], t, scale_by_logit), _grad_linear, act)


def path_nodes(steps, rule):
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] /= 2
        w[-1] /= 2
        return alphas, w
    if rule == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, w / 2
    raise ValueError(rule)


def integrated_gradients(spec, weights, x, steps, baseline=0.0, rule="riemann_trapezoid",
                         target=None):
    x = np.asarray(x, dtype=np.float64)
    x0 = np.broadcast_to(np.asarray(baseline, dtype=np.float64), x.shape)
    if target is None:
        target = logits(spec, weights, x).argmax(-1)  # fixed by x's own prediction
    alphas, w = path_nodes(steps, rule)
    total = np.zeros_like(x)
    for a, wa in zip(alphas, w):
        total += wa * gradient(spec, weights, x0 + a * (x - x0), target)
    return (x - x0) * total


# --------------------------------------------------------------------------------------------
# DeepLIFT Rescale
# --------------------------------------------------------------------------------------------

def deeplift_rescale(spec, weights, x, reference=0.0, target=None):
    """Contributions ``(x − x₀) ⊙ m``; ``m`` by the chain rule with the Rescale multiplier
    ``(f(x) − f(x₀)) / (x − x₀)`` (``f'(x)`` where x == x₀) at each non-linearity."""
    x = np.asarray(x, dtype=np.float64)
    x0 = np.broadcast_to(np.asarray(reference, dtype=np.float64), x.shape)
    acts = forward(spec, weights, x)
    refs = forward(spec, weights, x0)
    t = target_of(acts[-1], target)
    ref_of = {id(a): r for a, r in zip(acts, refs)}
    f = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}

    def act(kind, a, g):
        r = ref_of[id(a)]
        d = a - r
        same = np.abs(d) < 1e-12
        slope = np.where(same, _act_grad(kind, a, np.ones_like(a)),
                         (f[kind](a) - f[kind](r)) / np.where(same, 1.0, d))
        return g * slope

    m = _backward(spec, weights, acts, seed(acts[-1], t, False), _grad_linear, act)
    return (x - x0) * m


# --------------------------------------------------------------------------------------------
# LRP
# --------------------------------------------------------------------------------------------

def stab(z, eps):
    """z + ε·sign(z), sign(0) = +1."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def safe_div(num, den):
    """num / den with x/0 := 0."""
    zero = den == 0
    return np.where(zero, 0.0, num / np.where(zero, 1.0, den))


def pos(v):
    return np.maximum(v, 0.0)


def neg(v):
    return np.minimum(v, 0.0)


def _generic(layer, x, w, b, r, groups, eps):
    """R_in = Σ_groups coef Σ_terms s·in ⊙ Wmodᵀ q,
    q = mask ⊙ R / stab(Σ_terms s·(Wmod in + bmod)), x/0 := 0."""
    out = np.zeros_like(x)
    for coef, terms, mask in groups:
        den = sum(s * lin(layer, inp, wm, bm) for s, inp, wm, bm in terms)
        q = safe_div(r, stab(den, eps))
        if mask is not None:
            q = q * mask
        for s, inp, wm, bm in terms:
            out = out + coef * s * inp * lin_t(layer, q, wm, x.shape)
    return out


def lrp_layer(rule, layer, x, w, b, r):
    """Relevance at the input of one dense/conv layer for ``rule``, a plain tuple:

    ``("eps", ε)``, ``("zplus", ε)``, ``("ab", α, β, bias, ε)`` with bias in
    {"split", "whole", "none"}, ``("gamma", γ, ε)``, ``("flat", ε)``, ``("wsquare", ε)``,
    ``("zbox", low, high, ε)``.
    """
    name, eps = rule[0], rule[-1]
    xp, xn = pos(x), neg(x)
    wp, wn = pos(w), neg(w)
    bp, bn = pos(b), neg(b)
    zb = np.zeros_like(b)
    if name == "eps":
        groups = [(1.0, [(1.0, x, w, b)], None)]
    elif name == "zplus":
        groups = [(1.0, [(1.0, xp, wp, bp), (1.0, xn, wn, zb)], None)]
    elif name == "ab":
        alpha, beta, bias = rule[1], rule[2], rule[3]
        if bias == "split":
            pos_bias, neg_bias = (bp, zb), (bn, zb)
        elif bias == "whole":
            pos_bias, neg_bias = (bp, bn), (bp, bn)  # each group's terms add up to the whole b
        elif bias == "none":
            pos_bias, neg_bias = (zb, zb), (zb, zb)
        else:
            raise ValueError(bias)
        groups = [(alpha, [(1.0, xp, wp, pos_bias[0]), (1.0, xn, wn, pos_bias[1])], None),
                  (-beta, [(1.0, xp, wn, neg_bias[0]), (1.0, xn, wp, neg_bias[1])], None)]
        if beta == 0:
            groups = groups[:1]
    elif name == "gamma":
        g = rule[1]
        z = lin(layer, x, w, b)
        up_w, down_w = w + g * wp, w + g * wn
        up_b, down_b = b + g * bp, b + g * bn
        groups = [(1.0, [(1.0, xp, up_w, up_b), (1.0, xn, down_w, zb)], (z > 0).astype(float)),
                  (1.0, [(1.0, xp, down_w, down_b), (1.0, xn, up_w, zb)], (z < 0).astype(float))]
    elif name == "flat":
        ones = np.ones_like(x)
        groups = [(1.0, [(1.0, ones, np.ones_like(w), zb)], None)]
    elif name == "wsquare":
        ones = np.ones_like(x)
        groups = [(1.0, [(1.0, ones, w * w, b * b)], None)]
    elif name == "zbox":
        low = np.broadcast_to(np.asarray(rule[1], dtype=np.float64), x.shape)
        high = np.broadcast_to(np.asarray(rule[2], dtype=np.float64), x.shape)
        groups = [(1.0, [(1.0, x, w, b), (-1.0, low, wp, bp), (-1.0, high, wn, bn)], None)]
    else:
        raise ValueError(name)
    return _generic(layer, x, w, b, r, groups, eps)


def norm_split(x, r):
    """Average pool: the ε rule with the pool's own weights (Zennit ``Norm``), relevance split in
    proportion to the summands, ``R_i = (x_i / 4) R / stab(mean x)``: the stabiliser acts on the
    pool's output, the mean (ε on the window *sum* instead differs by ~1e-7 here, which the
    old 1e-5 comparison could not see)."""
    win = _windows(x)
    q = safe_div(r, stab(win.mean(axis=(2, 4)), NORM_EPS))
    return (win / 4.0 * q[:, :, None, :, None, :]).reshape(x.shape)


def lrp(spec, weights, x, rule_for, target=None, output_relu=False):
    """LRP with ``rule_for(k, layer, n_linear)`` giving the rule tuple of the k-th dense/conv
    layer (k = 0 nearest the input); activations pass, max pool routes to the winner, average
    pool splits proportionally. Seed: one-hot × the target logit (× relu of it with
    ``output_relu``, iNNvestigate's Deep Taylor)."""
    acts = forward(spec, weights, x)
    t = target_of(acts[-1], target)
    n_lin = sum(layer[0] in ("dense", "conv") for layer in spec)

    def linear(k, layer, a, w, b, r):
        return lrp_layer(rule_for(k, layer, n_lin), layer, a, w, b, r)

    return _backward(spec, weights, acts, seed(acts[-1], t, True, output_relu), linear,
                     lambda kind, a, r: r, avgpool_fn=norm_split)


# --------------------------------------------------------------------------------------------
# the same networks in jax
# --------------------------------------------------------------------------------------------

class SpecNet(nn.Module):
    """Flax Linen version of a spec (layer names Conv_i / Dense_i in order)."""

    spec: tuple

    @nn.compact
    def __call__(self, x):
        for layer in self.spec:
            kind = layer[0]
            if kind == "dense":
                x = nn.Dense(layer[1])(x)
            elif kind == "conv":
                x = nn.Conv(layer[1], (K, K), padding=layer[2])(x)
            elif kind == "relu":
                x = nn.relu(x)
            elif kind == "tanh":
                x = jnp.tanh(x)
            elif kind == "maxpool":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            elif kind == "avgpool":
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
        return x


@functools.lru_cache(maxsize=None)
def jax_apply(spec):
    """Plain-jax ``apply(params, x)`` for ``spec``; params: tuple of ``{"w", "b"}`` dicts."""
    lax = jax.lax

    def apply(params, x):
        k = 0
        for layer in spec:
            kind = layer[0]
            if kind == "dense":
                x = jnp.dot(x, params[k]["w"]) + params[k]["b"]
                k += 1
            elif kind == "conv":
                x = lax.conv_general_dilated(x, params[k]["w"], (1, 1), layer[2],
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
                x = x + params[k]["b"]
                k += 1
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "tanh":
                x = jnp.tanh(x)
            elif kind == "maxpool":
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1),
                                      (1, 2, 2, 1), "VALID")
            elif kind == "avgpool":
                x = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1),
                                      (1, 2, 2, 1), "VALID") / 4.0
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
        return x

    return apply


def jax_params(weights):
    return tuple({"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in weights)


@functools.lru_cache(maxsize=None)
def linen_model(spec):
    return SpecNet(spec)


@functools.lru_cache(maxsize=None)
def linen_apply(spec):
    return linen_model(spec).apply


def linen_params(spec, weights):
    params, counts, wi = {}, {"dense": 0, "conv": 0}, iter(weights)
    for layer in spec:
        if layer[0] in counts:
            w, b = next(wi)
            name = f"{'Dense' if layer[0] == 'dense' else 'Conv'}_{counts[layer[0]]}"
            counts[layer[0]] += 1
            params[name] = {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}
    return {"params": params}


# --------------------------------------------------------------------------------------------
# running many methods under one compilation (the suite has to stay fast on 2 shared cores)
# --------------------------------------------------------------------------------------------

#: XLA's optimisation passes cost seconds per program on these 2 shared cores and change
#: nothing a float64 comparison at 1e-10 can see; the default-compiled path of ``ja.attribute``
#: is exercised directly by a few tests (and by the property tests' eager comparison).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_COMPILED = {}


def _key_of(v):
    return None if v is None else (np.asarray(v).shape, np.asarray(v).tobytes())


def jit_many(attribute, apply_fn, params, x, methods, target=None, vmapped=False):
    """``[attribute(apply_fn, params, x, target=t, method=m) for m, t in ...]`` as ONE compiled
    program (XLA's cost per compilation dominates on tiny nets), cached by signature so a loop
    over same-shaped inputs compiles once. ``target``: None, one array for every method, or a
    list with one entry per method. ``vmapped``: x carries an extra leading axis that
    ``jax.vmap`` maps the whole attribution over. A method whose tracing raises gets its
    exception in place of its array, so one failure does not hide the others."""
    methods = tuple(methods)
    targets = list(target) if isinstance(target, list) else [target] * len(methods)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    key = (apply_fn, methods, tuple(_key_of(t) for t in targets), treedef,
           tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves), x.shape, str(x.dtype),
           vmapped, bool(jax.config.jax_enable_x64))
    if key not in _COMPILED:
        errors = {}

        def one(p, xx):
            outs = []
            for i, (m, t) in enumerate(zip(methods, targets)):
                try:
                    tt = None if t is None else jnp.asarray(t)
                    outs.append(attribute(apply_fn, p, xx, target=tt, method=m))
                except Exception as err:  # noqa: BLE001 - reported per method by the caller
                    errors[i] = err
                    outs.append(jnp.zeros_like(xx))
            return outs

        fn = jax.vmap(one, in_axes=(None, 0)) if vmapped else one
        compiled = jax.jit(fn).lower(params, x).compile(compiler_options=FAST_COMPILE)
        _COMPILED[key] = (compiled, errors)
    compiled, errors = _COMPILED[key]
    outs = compiled(params, x)
    return [errors.get(i, np.asarray(o)) for i, o in enumerate(outs)]


#: Float64 comparison tolerances of :func:`check`. At 1e-5 the oracle with a stabiliser of
#: ε = 1e-6 passed against itself with ε = 0 (z⁺, γ, αβ, ε: 10 of 12 rule × network cases), so
#: no test could see a missing or misplaced stabiliser; float64 round-off here is ~1e-14, and
#: ``tests/rules/test_lrp_oracle.py::test_check_sees_a_stabiliser`` keeps this honest.
RTOL = 1e-10
ATOL = 1e-10


def check(got, want, rtol=RTOL, atol=ATOL):
    """Raise ``got``'s exception if it is one, else assert ``|got − want| ≤ atol + rtol·|want|``
    elementwise (float64 only), naming the worst entry."""
    if isinstance(got, Exception):
        raise got
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == np.float64, got.dtype
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    if np.any(err > 0):
        i = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(f"mismatch at {i}: got {got[i]!r}, oracle {want[i]!r}; max abs "
                             f"diff {np.abs(got - want).max():.3g}; oracle scale "
                             f"{np.abs(want).max():.3g}")
