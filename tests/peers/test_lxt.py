"""jaxattr's AttnLRP and CP-LRP against LXT (Achtibat et al.'s reference implementation, ``lxt``
2.1), float64 on both sides, one set of weights.

Two Flax Linen models built from stock modules (``nn.MultiHeadDotProductAttention``,
``nn.LayerNorm``, ``nn.Dense``, ``nn.gelu``) and their torch twins written with
``lxt.explicit.functional`` (``linear_epsilon``, ``matmul``, ``softmax``, ``add2``, ``mean``,
``layer_norm``; LXT's identity rule on GELU and tanh):

* a ViT-like pre-norm block over patch embeddings: cls token, position embeddings, attention,
  GELU MLP, final LayerNorm, mean pooling, linear head;
* a BERT-like post-norm encoder over token embeddings with a padding mask, a tanh pooler on the
  first token.

``lxt.efficient`` (which imports Hugging Face model modules) is not used: LXT is installed
without its dependencies (``pip install --no-deps lxt``, see pyproject.toml's ``[peers]``).

Where LXT and jaxattr differ (all tested or pinned here):

* **Stabiliser**: LXT divides by ``z + ε`` (``_stabilize``), jaxattr (like Zennit) by
  ``z + ε·sign(z)``; and LXT's ``mean`` stabilises the sum, jaxattr the mean. Equal in the limit:
  both sides use ε = 1e-10 here (LXT's ``layer_norm`` fixes its ε-rule's ε at 1e-6; the twin
  calls ``layer_norm_grad_fn`` with 1e-10).
* **CP-LRP** has no explicit functional in LXT: its CP-LRP (``lxt.efficient``'s
  ``patch_cp_attention``) stops the gradient at the queries and keys, so ``A·V`` is linear in
  ``V`` and ``V`` takes all of its relevance. The twin writes that product as
  ``linear_epsilon(Vᵀ, A)`` per head; LXT's explicit ``matmul`` with ``A`` detached would
  halve it (tested: the halved variant is not CP-LRP's conservation).
* LXT's ``softmax`` takes the softmax's input as ``x`` in Proposition 3.1 (as the paper), and
  zeroes ``−∞``; jaxattr's :class:`~jaxattr.rules.SoftmaxTaylor` does the same (Flax masks with
  the dtype's minimum, finite, whose relevance is ``min · 0 = 0``).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
lf = pytest.importorskip("lxt.explicit.functional",
                         reason="the LXT cross-check needs lxt (pip install --no-deps lxt)")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxattr as ja  # noqa: E402

B, T, D, H, MLP, C = 3, 5, 8, 2, 12, 4
DH = D // H
EPS = 1e-10
LN_EPS = 1e-6  # Flax's LayerNorm epsilon


# --------------------------------------------------------------------------------------------
# Flax models
# --------------------------------------------------------------------------------------------

class ViTBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, D), x.dtype)
        h = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, D)), x], axis=1)
        h = h + self.param("pos", nn.initializers.normal(0.5), (1, T + 1, D), x.dtype)
        h = h + nn.MultiHeadDotProductAttention(H, name="attn")(nn.LayerNorm(name="ln1")(h))
        h = h + nn.Dense(D, name="down")(nn.gelu(nn.Dense(MLP, name="up")(nn.LayerNorm(name="ln2")(h))))
        return nn.Dense(C, name="head")(nn.LayerNorm(name="ln3")(h).mean(axis=1))


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x, mask):
        h = nn.LayerNorm(name="ln1")(x + self.param("pos", nn.initializers.normal(0.5), (1, T, D), x.dtype))
        att = nn.MultiHeadDotProductAttention(H, name="attn")(h, mask=nn.make_attention_mask(mask, mask))
        h = nn.LayerNorm(name="ln2")(h + att)
        h = nn.LayerNorm(name="ln3")(h + nn.Dense(D, name="down")(nn.gelu(nn.Dense(MLP, name="up")(h))))
        return nn.Dense(C, name="head")(jnp.tanh(nn.Dense(D, name="pooler")(h[:, 0])))


def _noisy(params, key):
    """Random biases and LayerNorm scales/shifts (Flax initialises them to 0 and 1)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [l + 0.2 * jax.random.normal(k, l.shape, l.dtype)
                                               for l, k in zip(leaves, keys)])


def _setup(kind):
    rng = np.random.default_rng(0 if kind == "vit" else 1)
    x = jnp.asarray(rng.normal(size=(B, T, D)))
    if kind == "vit":
        model = ViTBlock()
        params = _noisy(model.init(jax.random.key(0), x), jax.random.key(1))
        return model.apply, params, x, None
    model = Encoder()
    mask = jnp.asarray(np.arange(T)[None, :] < np.array([T, T - 2, T - 1])[:, None])
    variables = _noisy(model.init(jax.random.key(2), x, mask), jax.random.key(3))
    fn = lambda p, x_: model.apply(p["model"], x_, p["mask"])
    return fn, {"model": variables, "mask": mask}, x, mask


# --------------------------------------------------------------------------------------------
# torch twins, written with lxt.explicit.functional
# --------------------------------------------------------------------------------------------

class _Identity(torch.autograd.Function):
    """LXT's identity rule on an elementwise nonlinearity (AttnLRP eq. 9): relevance passes."""

    @staticmethod
    def forward(ctx, fn, x):
        return fn(x)

    @staticmethod
    def backward(ctx, relevance):
        return None, relevance


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _linear(x, p, scale=1.0):
    kernel = _t(p["kernel"])
    kernel = kernel.reshape(-1, kernel.shape[-1]) if kernel.ndim == 3 and kernel.shape[0] == H \
        else kernel.reshape(kernel.shape[0], -1)
    return lf.linear_epsilon(x, (kernel * scale).T.contiguous(), _t(p["bias"]).reshape(-1) * scale, EPS)


def _layer_norm(x, p):
    return lf.layer_norm_grad_fn.apply(x, _t(p["scale"]), _t(p["bias"]), LN_EPS, EPS)


def _attention(h, p, mask, cp, halved=False):
    b = h.shape[0]
    heads = lambda v: v.reshape(b, -1, H, DH).permute(0, 2, 1, 3)
    q = heads(_linear(h, p["query"], 1 / math.sqrt(DH)))
    k, v = heads(_linear(h, p["key"])), heads(_linear(h, p["value"]))
    if cp:  # LXT's CP-LRP: no gradient through the queries and keys
        q, k = q.detach(), k.detach()
    s = lf.matmul(q, k.transpose(-1, -2), epsilon=EPS)
    if mask is not None:
        keep = (mask[:, None, :, None] & mask[:, None, None, :])
        s = torch.where(keep, s, torch.tensor(torch.finfo(torch.float64).min, dtype=torch.float64))
    a = lf.softmax(s, -1)
    if cp and not halved:  # A held constant: the ε-rule of the linear map V -> A·V, per head
        o = torch.stack([torch.stack([lf.linear_epsilon(v[i, j].T, a[i, j].detach(), None, EPS).T
                                      for j in range(H)]) for i in range(b)])
    else:
        o = lf.matmul(a.detach() if cp else a, v, epsilon=EPS)
    o = o.permute(0, 2, 1, 3).reshape(b, -1, H * DH)
    return _linear(o, p["out"])


def _mlp(h, p):
    up = _Identity.apply(lambda v: torch.nn.functional.gelu(v, approximate="tanh"), _linear(h, p["up"]))
    return _linear(up, p["down"])


def _torch_vit(params, x, cp=False, halved=False):
    p = params["params"]
    h = torch.cat([_t(p["cls"]).expand(x.shape[0], 1, D), x], dim=1)
    h = lf.add2(h, _t(p["pos"]).expand_as(h), epsilon=EPS)
    h = lf.add2(h, _attention(_layer_norm(h, p["ln1"]), p["attn"], None, cp, halved), epsilon=EPS)
    h = lf.add2(h, _mlp(_layer_norm(h, p["ln2"]), p), epsilon=EPS)
    return _linear(lf.mean(_layer_norm(h, p["ln3"]), 1, False, EPS), p["head"])


def _torch_encoder(params, x, cp=False, halved=False):
    p, mask = params["model"]["params"], torch.tensor(np.asarray(params["mask"]))
    h = _layer_norm(lf.add2(x, _t(p["pos"]).expand_as(x), epsilon=EPS), p["ln1"])
    h = _layer_norm(lf.add2(h, _attention(h, p["attn"], mask, cp, halved), epsilon=EPS), p["ln2"])
    h = _layer_norm(lf.add2(h, _mlp(h, p), epsilon=EPS), p["ln3"])
    pooled = _Identity.apply(torch.tanh, _linear(h[:, 0], p["pooler"]))
    return _linear(pooled, p["head"])


TWINS = {"vit": _torch_vit, "bert": _torch_encoder}


def _lxt(kind, params, x, target, **kw):
    xt = _t(x).requires_grad_(True)
    out = TWINS[kind](params, xt, **kw)
    seed = torch.zeros_like(out)
    rows = torch.arange(out.shape[0])
    seed[rows, torch.as_tensor(np.asarray(target))] = out.detach()[rows, torch.as_tensor(np.asarray(target))]
    out.backward(seed)
    return out.detach().numpy(), xt.grad.numpy()


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["vit", "bert"])
@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
def test_jaxattr_equals_lxt(kind, variant):
    with jax.enable_x64(True):
        fn, params, x, _ = _setup(kind)
        logits = np.asarray(fn(params, x))
        target = logits.argmax(-1)
        comp = ja.composites.attn_lrp(EPS) if variant == "attn_lrp" else ja.composites.cp_lrp(EPS)
        got = np.asarray(ja.attribute(fn, params, x, jnp.asarray(target), ja.LRP(comp)))
    out, want = _lxt(kind, params, x, target, cp=variant == "cp_lrp")
    np.testing.assert_allclose(out, logits, rtol=1e-12, atol=1e-12)  # the twins agree
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_cp_lrp_is_not_lxt_matmul_with_detached_weights():
    """LXT's explicit ``matmul`` always halves (uniform rule): with ``A`` detached, ``V`` gets
    only half of ``A·V``'s relevance — not CP-LRP, whose ``V`` takes all of it."""
    with jax.enable_x64(True):
        fn, params, x, _ = _setup("vit")
        target = np.asarray(fn(params, x)).argmax(-1)
        got = np.asarray(ja.attribute(fn, params, x, jnp.asarray(target),
                                      ja.LRP(ja.composites.cp_lrp(EPS))))
    _, halved = _lxt("vit", params, x, target, cp=True, halved=True)
    assert np.abs(got - halved).max() > 1e-3 * np.abs(got).max()
