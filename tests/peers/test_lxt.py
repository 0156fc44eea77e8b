"""jaxattr's AttnLRP and CP-LRP against LXT (Achtibat et al.'s reference implementation, ``lxt``
2.1), float64 on both sides, one set of weights.

Two Flax Linen models built from stock modules (``nn.MultiHeadDotProductAttention``,
``nn.LayerNorm``, ``nn.Dense``, ``nn.gelu``) and their torch twins written with
``lxt.explicit.functional`` (``linear_epsilon``, ``matmul``, ``softmax``, ``add2``, ``mean``,
``layer_norm``; LXT's identity rule on GELU and tanh), both in ``_lxt_twins.py`` (shared with
``benchmarks/peers.py``'s ``attn_lrp``/``cp_lrp`` rows):

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
  ``V`` and ``V`` takes all of its relevance. The twin writes that product with LXT's rules as the
  mean over the keys of ``n·A[t, k]·V[k, d]`` (identity rule on each product, LXT's ε-rule of
  the mean: an ε of ε/n on ``A·V``); LXT's explicit ``matmul`` with ``A`` detached would halve
  it (tested: the halved variant is not CP-LRP's conservation).
* LXT's ``softmax`` takes the softmax's input as ``x`` in Proposition 3.1 (as the paper), and
  zeroes ``−∞``; jaxattr's :class:`~jaxattr.rules.SoftmaxTaylor` does the same (Flax masks with
  the dtype's minimum, finite, whose relevance is ``min · 0 = 0``).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
pytest.importorskip("lxt.explicit.functional",
                    reason="the LXT cross-check needs lxt (pip install --no-deps lxt)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxattr as ja  # noqa: E402
from _lxt_twins import Encoder, Twin, ViT, noisy  # noqa: E402  (tests/peers is on sys.path)

B, T, D, H, MLP, C = 3, 5, 8, 2, 12, 4
EPS = 1e-10


def _setup(kind):
    rng = np.random.default_rng(0 if kind == "vit" else 1)
    x = jnp.asarray(rng.normal(size=(B, T, D)))
    if kind == "vit":
        model = ViT(D, H, MLP, C, tokens=T)
        params = noisy(model.init(jax.random.key(0), x), jax.random.key(1))
        return model.apply, params, x, None
    model = Encoder(D, H, MLP, C, tokens=T)
    mask = jnp.asarray(np.arange(T)[None, :] < np.array([T, T - 2, T - 1])[:, None])
    variables = noisy(model.init(jax.random.key(2), x, mask), jax.random.key(3))
    fn = lambda p, x_: model.apply(p["model"], x_, p["mask"])
    return fn, {"model": variables, "mask": mask}, x, mask


def _lxt(kind, params, x, target, **kw):
    twin = Twin(params, kind=kind, heads=H, eps=EPS, **kw)
    out, rel = twin.attribute(torch.tensor(np.asarray(x)), torch.as_tensor(np.asarray(target)))
    return out.numpy(), rel.numpy()


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


@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
def test_patch_vit_with_lxt_inplace(variant):
    """The benchmark's model (``benchmarks/peers.py``): images cut into patches, two blocks, and
    LXT's ``inplace`` backward, which the benchmark times."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(2).uniform(size=(B, 8, 8, 3)))
        model = ViT(D, H, MLP, C, tokens=4, blocks=2, patch=4)
        params = noisy(model.init(jax.random.key(4), x), jax.random.key(5))
        target = np.asarray(model.apply(params, x)).argmax(-1)
        comp = ja.composites.attn_lrp(EPS) if variant == "attn_lrp" else ja.composites.cp_lrp(EPS)
        got = np.asarray(ja.attribute(model.apply, params, x, jnp.asarray(target), ja.LRP(comp)))
    twin = Twin(params, heads=H, patch=4, eps=EPS, cp=variant == "cp_lrp", inplace=True)
    _, want = twin.attribute(torch.tensor(np.asarray(x)), torch.as_tensor(target))
    assert np.abs(want.numpy()).max() > 1e-3
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6 * np.abs(want.numpy()).max())
