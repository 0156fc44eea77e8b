"""Flax transformers and their LXT twins: one set of weights, two frameworks.

Used by the LXT cross-check (``tests/peers/test_lxt.py``, float64) and by
``benchmarks/peers.py``'s ``attn_lrp``/``cp_lrp`` rows (float32; it puts this folder on
``sys.path``). Needs torch and ``lxt`` (``pip install --no-deps lxt``).

Two Flax Linen models built from stock modules (``nn.MultiHeadDotProductAttention``,
``nn.LayerNorm``, ``nn.Dense``, ``nn.gelu``):

* :class:`ViT`: pre-norm blocks over token embeddings — or over image patches (``patch``: NHWC
  images cut into ``patch × patch`` squares, flattened and embedded by a ``Dense``): cls token,
  position embeddings, ``blocks`` × (LayerNorm, attention, residual add, LayerNorm, GELU MLP,
  residual add), final LayerNorm, mean pooling over the tokens, linear head;
* :class:`Encoder`: a BERT-like post-norm block over token embeddings with a padding mask, a tanh
  pooler on the first token.

Their torch twins (:class:`Twin`) are written with ``lxt.explicit.functional``
(``linear_epsilon``, ``matmul``, ``softmax``, ``add2``, ``mean``, ``layer_norm_grad_fn``; LXT's
identity rule on GELU and tanh), their weights converted, transposed and laid out once when the
twin is built (reshapes and permutes are free in both frameworks: the twin takes the same NHWC
images). :meth:`Twin.attribute` is LXT's AttnLRP (or CP-LRP, ``cp=True``) of the target logit.
See ``test_lxt.py`` for where LXT and jaxattr differ (stabiliser, CP-LRP).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch  # before jax: triton (reached through torch._dynamo) segfaults if jaxlib loaded first
import lxt.explicit.functional as lf

import flax.linen as nn
import jax
import jax.numpy as jnp

LN_EPS = 1e-6  # Flax's LayerNorm epsilon


# --------------------------------------------------------------------------------------------
# Flax models
# --------------------------------------------------------------------------------------------

def patches(x, p):
    """NHWC images -> ``(batch, tokens, p·p·C)``: row-major ``p × p`` squares, each flattened."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c)
    if isinstance(x, torch.Tensor):
        x = x.permute(0, 1, 3, 2, 4, 5)
    else:
        x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


class ViTBlock(nn.Module):
    """Pre-norm: ``h + attn(ln1(h))``, then ``h + down(gelu(up(ln2(h))))``."""

    heads: int
    mlp: int

    @nn.compact
    def __call__(self, h):
        h = h + nn.MultiHeadDotProductAttention(self.heads, name="attn")(nn.LayerNorm(name="ln1")(h))
        up = nn.gelu(nn.Dense(self.mlp, name="up")(nn.LayerNorm(name="ln2")(h)))
        return h + nn.Dense(h.shape[-1], name="down")(up)


class ViT(nn.Module):
    """See the module docstring. ``tokens``: the number of patches (or input tokens)."""

    dim: int
    heads: int
    mlp: int
    classes: int
    tokens: int
    blocks: int = 1
    patch: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        if self.patch:
            x = nn.Dense(self.dim, name="embed")(patches(x, self.patch))
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, self.dim), x.dtype)
        h = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.dim)), x], axis=1)
        h = h + self.param("pos", nn.initializers.normal(0.5), (1, self.tokens + 1, self.dim), x.dtype)
        for i in range(self.blocks):
            h = ViTBlock(self.heads, self.mlp, name=f"block{i}")(h)
        return nn.Dense(self.classes, name="head")(nn.LayerNorm(name="ln")(h).mean(axis=1))


class Encoder(nn.Module):
    """BERT-like post-norm block over ``(batch, tokens, dim)`` with a padding mask."""

    dim: int
    heads: int
    mlp: int
    classes: int
    tokens: int

    @nn.compact
    def __call__(self, x, mask):
        pos = self.param("pos", nn.initializers.normal(0.5), (1, self.tokens, self.dim), x.dtype)
        h = nn.LayerNorm(name="ln1")(x + pos)
        att = nn.MultiHeadDotProductAttention(self.heads, name="attn")(
            h, mask=nn.make_attention_mask(mask, mask))
        h = nn.LayerNorm(name="ln2")(h + att)
        h = nn.LayerNorm(name="ln3")(h + nn.Dense(self.dim, name="down")(nn.gelu(nn.Dense(self.mlp, name="up")(h))))
        return nn.Dense(self.classes, name="head")(jnp.tanh(nn.Dense(self.dim, name="pooler")(h[:, 0])))


def noisy(params, key, scale=0.2):
    """Random biases and LayerNorm scales/shifts (Flax initialises them to 0 and 1)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [l + scale * jax.random.normal(k, l.shape, l.dtype)
                                               for l, k in zip(leaves, keys)])


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


def _gelu(v):
    return torch.nn.functional.gelu(v, approximate="tanh")  # Flax's nn.gelu default


class Twin:
    """The torch twin of a :class:`ViT` (``kind="vit"``) or :class:`Encoder` (``"bert"``; the
    mask is ``params["mask"]``, the model's variables ``params["model"]``) from Flax's
    ``params``, in ``dtype``. ``eps``: every ε-rule's ε (LXT's ``layer_norm`` fixes its own at
    1e-6; the twin calls ``layer_norm_grad_fn`` with ``eps``). ``cp``: CP-LRP (no gradient
    through the queries and keys; ``A·V`` as the ε-rule of the linear map ``V -> A·V``, written
    with LXT's identity rule and ε-rule of the mean, since LXT's explicit ``matmul`` halves —
    ``halved=True`` keeps that, for the test that shows it is not CP-LRP). ``inplace``: LXT's
    ``inplace`` option of ``add2`` and ``matmul`` (their backward overwrites the incoming
    relevance: fewer allocations)."""

    def __init__(self, params, *, kind="vit", heads, patch=None, dtype=torch.float64, eps=1e-10,
                 cp=False, halved=False, inplace=False, device="cpu"):
        self.kind, self.heads, self.patch, self.dtype, self.eps = kind, heads, patch, dtype, eps
        self.device = device
        self.cp, self.halved, self.inplace = cp, halved, inplace
        if kind == "bert":
            self.mask = torch.tensor(np.asarray(params["mask"]), device=device)
            params = params["model"]
        self.p = self._convert(params["params"])

    def _tensor(self, a):
        return torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def _convert(self, tree, name=""):
        """Dense and attention projections -> ``(weight (out, in), bias)``, once; the query's
        ``1/√d_head`` (Flax scales the projected queries) folded into its weights."""
        if not isinstance(tree, dict):
            return self._tensor(tree)
        if "kernel" in tree:
            k = np.asarray(tree["kernel"])
            k = k.reshape(-1, k.shape[-1]) if name == "out" else k.reshape(k.shape[0], -1)
            b = np.asarray(tree["bias"]).reshape(-1)
            if name == "query":
                scale = 1 / math.sqrt(k.shape[1] // self.heads)
                k, b = k * scale, b * scale
            return self._tensor(k.T).contiguous(), self._tensor(b)
        return {key: self._convert(value, key) for key, value in tree.items()}

    def _linear(self, x, wb):
        return lf.linear_epsilon(x, wb[0], wb[1], self.eps)

    def _add(self, a, b):
        return lf.add2(a, b, self.inplace, self.eps)

    def _layer_norm(self, x, p):
        return lf.layer_norm_grad_fn.apply(x, p["scale"], p["bias"], LN_EPS, self.eps)

    def _attention(self, h, p, mask=None):
        b = h.shape[0]
        split = lambda v: v.reshape(b, v.shape[1], self.heads, -1).permute(0, 2, 1, 3)
        q, k, v = (split(self._linear(h, p[n])) for n in ("query", "key", "value"))
        if self.cp:  # LXT's CP-LRP: no gradient through the queries and keys
            q, k = q.detach(), k.detach()
        s = lf.matmul(q, k.transpose(-1, -2), self.inplace, self.eps)
        if mask is not None:
            keep = mask[:, None, :, None] & mask[:, None, None, :]
            s = torch.where(keep, s, torch.tensor(torch.finfo(s.dtype).min, dtype=s.dtype))
        a = lf.softmax(s, -1)
        if self.cp and not self.halved:  # A held constant: the ε-rule of the linear V -> A·V
            # batched with LXT's own rules: every product A[t, k]·V[k, d] (times the number of
            # keys n) by the identity rule, then their mean over k by LXT's ε-rule of the mean
            # (which stabilises the sum n·(A·V): an ε of ε/n on A·V, equal in the limit)
            n = a.shape[-1]
            weights = a.detach()[..., None] * n
            products = _Identity.apply(lambda u: weights * u,
                                       v[:, :, None].expand(-1, -1, a.shape[-2], -1, -1))
            o = lf.mean(products, 3, False, self.eps)
        else:
            o = lf.matmul(a.detach() if self.cp else a, v, self.inplace, self.eps)
        return self._linear(o.permute(0, 2, 1, 3).reshape(b, h.shape[1], -1), p["out"])

    def _mlp(self, h, p):
        return self._linear(_Identity.apply(_gelu, self._linear(h, p["up"])), p["down"])

    def __call__(self, x):
        return self._vit(x) if self.kind == "vit" else self._encoder(x)

    def _vit(self, x):
        p = self.p
        if self.patch:
            x = self._linear(patches(x, self.patch), p["embed"])
        h = torch.cat([p["cls"].expand(x.shape[0], 1, -1), x], dim=1)
        h = self._add(h, p["pos"].expand_as(h))
        for i in range(sum(k.startswith("block") for k in p)):
            blk = p[f"block{i}"]
            h = self._add(h, self._attention(self._layer_norm(h, blk["ln1"]), blk["attn"]))
            h = self._add(h, self._mlp(self._layer_norm(h, blk["ln2"]), blk))
        return self._linear(lf.mean(self._layer_norm(h, p["ln"]), 1, False, self.eps), p["head"])

    def _encoder(self, x):
        p = self.p
        h = self._layer_norm(self._add(x, p["pos"].expand_as(x)), p["ln1"])
        h = self._layer_norm(self._add(h, self._attention(h, p["attn"], self.mask)), p["ln2"])
        h = self._layer_norm(self._add(h, self._mlp(h, p)), p["ln3"])
        return self._linear(_Identity.apply(torch.tanh, self._linear(h[:, 0], p["pooler"])), p["head"])

    def attribute(self, x, target):
        """LXT's relevance of the ``target`` logits (torch tensors) at ``x`` (a torch tensor in
        the twin's dtype): the logits and the input relevance, both torch tensors."""
        x = x.detach().clone().requires_grad_(True)
        out = self(x)
        seed = torch.nn.functional.one_hot(target.long(), out.shape[-1]).to(out) * out.detach()
        out.backward(seed)
        return out.detach(), x.grad
