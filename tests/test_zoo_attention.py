"""LRP and DeepLIFT on the zoo's transformers (issue #21): AttnLRP, CP-LRP and DeepLIFT on the
ViT (Linen, cls token; NNX, mean pooled), the BERT-style encoder (padding mask) and the
GPT-style decoder (causal mask) of ``tests/model_zoo.py``, in float64:

* each example alone, under ``jax.vmap`` over the examples, equals the batch (batch == per
  example); jit equals eager (``jax.disable_jit``) on the GPT;
* DeepLIFT sums to delta within 1e-6 relative (``ja.evaluation.checks.summation_to_delta``);
* conservation with biases (and position embeddings, the cls token) set to 0 and a tiny ε
  (GPT by default; the NNX ViT and BERT with ``-m slow``):
  CP-LRP's relevance sums to the target logit; AttnLRP's to the logit minus what its softmax
  rule absorbs (the Taylor bias term of Achtibat et al. 2024, Prop. 3.1), measured by
  ``ja.engine.ledger`` (``ΣR_out − ΣR_in`` per segment);
* with biases (ViT, BERT; the NNX ViT with ``-m slow``): AttnLRP's relevance sums to the target
  logit minus what the ledger's rows absorb (biases, ε, the softmax rule), per example.
"""

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
import model_zoo as Z  # noqa: E402  (tests/ is on sys.path, see conftest.py)
import oracle as O  # noqa: E402

NAMES = ("vit", pytest.param("vit_mean_nnx", marks=pytest.mark.slow), "bert", "gpt")
METHODS = {"attn_lrp": ja.LRP(ja.composites.attn_lrp(1e-6)),
           "cp_lrp": ja.LRP(ja.composites.cp_lrp(1e-6)),
           "deeplift": ja.DeepLIFT(reference=0.0),  # the softmax by DeepLIFT's rules
           "deeplift_path": ja.DeepLIFT(reference=0.0, softmax="path")}
TOL = dict(rtol=1e-10, atol=1e-12)


def _program(entry):
    axes = entry.batch_params

    def run(params, x):
        out = {"batch": {n: ja.attribute(entry.fn, params, x, method=m) for n, m in METHODS.items()}}
        one = lambda p, xi: {n: ja.attribute(entry.fn, p, xi, method=m) for n, m in METHODS.items()}
        out["vmap"] = jax.vmap(one, in_axes=(axes, 0))(Z.per_example_params(entry, params),
                                                       x[:, None])
        out["logits"] = entry.fn(params, x)
        out["reference_logits"] = entry.fn(params, jnp.zeros_like(x))
        return out

    return run


@pytest.fixture(scope="module")
def results():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Z.run_program(name, _program, O.FAST_COMPILE)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_attention_methods_run_batch_equals_examples(results, name):
    entry, out = results(name)
    for method, got in out["batch"].items():
        assert got.shape == entry.x.shape and np.all(np.isfinite(got)), method
        assert np.all(np.abs(got).reshape(Z.BATCH, -1).max(1) > 1e-8), method
        np.testing.assert_allclose(out["vmap"][method][:, 0], got, err_msg=f"{name} {method}", **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_deeplift_sums_to_delta(results, name):
    entry, out = results(name)
    target = out["logits"].argmax(-1)
    rows = np.arange(Z.BATCH)
    delta = out["logits"][rows, target] - out["reference_logits"][rows, target]
    for method in ("deeplift", "deeplift_path"):  # the softmax by the rules or by its path
        total = out["batch"][method].reshape(Z.BATCH, -1).sum(1)
        np.testing.assert_allclose(total, delta, rtol=1e-6, atol=1e-6 * np.abs(delta).max())
        if name != "vit_mean_nnx":  # Flax NNX's attention takes its softmax in float32 (1e-8)
            assert np.abs(total - delta).max() < 1e-10 * np.abs(delta).max()  # measured: ~1e-15


def test_jit_equals_eager_on_gpt(results):
    entry, out = results("gpt")
    with jax.enable_x64(True), jax.disable_jit():
        eager = np.asarray(ja.attribute(entry.fn, entry.params, entry.x, method=METHODS["attn_lrp"]))
    np.testing.assert_allclose(eager, out["batch"]["attn_lrp"], **TOL)


# ---------------------------------------------------------------------------------------------
# conservation, with the ledger of what each segment absorbs (ja.engine.ledger)
# ---------------------------------------------------------------------------------------------

def _absorbed_by_kind(rows):
    """Per segment kind, what its rows absorbed, per example."""
    out = {}
    for r in rows:
        out[r.kind] = out.get(r.kind, 0.0) + r.absorbed
    return out


@pytest.mark.parametrize("name", ["vit", "bert",
                                  pytest.param("vit_mean_nnx", marks=pytest.mark.slow)])
def test_attn_lrp_relevance_is_the_logit_minus_what_the_ledger_absorbs(name):
    """With biases: AttnLRP's input relevance sums to the target logit minus what the segments
    absorb (biases, ε, the softmax rule) and what reaches the ViT's cls token, per example; the
    ledger names them."""
    with jax.enable_x64(True):
        (entry,) = Z.zoo(jnp.float64, [name])
        method = METHODS["attn_lrp"]
        target = jnp.argmax(entry.fn(entry.params, entry.x), -1)
        rows = ja.engine.ledger(entry.fn, entry.params, entry.x, method, target)
        r = ja.attribute(entry.fn, entry.params, entry.x, target, method)
        check = ja.evaluation.checks.conservation(entry.fn, entry.params, entry.x, r, target)
        audit = ja.engine.audit(entry.fn, entry.params, entry.x, method)
    gap = np.asarray(check.logit) - np.asarray(check.total)
    scale = np.abs(np.asarray(check.logit)).max()
    absorbed = _absorbed_by_kind(rows)
    np.testing.assert_allclose(sum(absorbed.values()), gap, rtol=0, atol=1e-8 * scale)
    assert np.abs(gap).max() > 1e-3 * scale  # a visible gap, explained by the rows
    assert np.abs(absorbed["dense"]).max() > 1e-6 * scale  # the biases take a share
    assert np.abs(absorbed["softmax"]).max() > 1e-6 * scale  # and so does the softmax rule
    if name == "vit":  # the cls token is a constant: what reaches it leaves at the concatenate
        (cls,) = [r for r in rows if r.kind == "plumbing"]
        assert np.abs(cls.absorbed).min() > 1e-6 * scale
    # a row per segment of the audit (and per node handing relevance to a constant), in its order
    owner = {n: r for r in rows for n in r.nodes}
    assert all(a.node in owner for a in audit if a.kind in ja.engine.KINDS)
    listed = [a for a in audit if a.node in owner]
    assert len(listed) == sum(len(r.nodes) for r in rows)
    assert [owner[a.node].kind for a in listed] == [a.kind for a in listed]
    names = {}
    for a in listed:
        names.setdefault(owner[a.node].index, set()).add(a.name)
    assert all(r.name in names[r.index] for r in rows)  # a segment's name is one of its nodes'
    first = []
    for a in listed:
        if owner[a.node].index not in first:
            first.append(owner[a.node].index)
    assert first == list(range(len(rows)))  # each row where the audit first lists its segment


def _no_biases(params):
    """Biases, LayerNorm shifts, position embeddings and the cls token set to 0."""
    def zero(path, leaf):
        name = jax.tree_util.keystr(path)
        hit = any(k in name for k in ("'bias'", "'pos'", "'cls'", ".bias", ".pos"))
        return jnp.zeros_like(leaf) if hit and jnp.issubdtype(leaf.dtype, jnp.floating) else leaf
    return jax.tree_util.tree_map_with_path(zero, params)


@pytest.mark.parametrize("name", ["gpt", pytest.param("vit_mean_nnx", marks=pytest.mark.slow),
                                  pytest.param("bert", marks=pytest.mark.slow)])
def test_conservation_without_biases(name):
    with jax.enable_x64(True):
        (entry,) = Z.zoo(jnp.float64, [name])
        params = _no_biases(entry.params)
        target = jnp.argmax(entry.fn(params, entry.x), -1)
        eps = 1e-12
        gaps = {}
        for method, comp in (("cp_lrp", ja.composites.cp_lrp(eps)),
                             ("attn_lrp", ja.composites.attn_lrp(eps))):
            rows = ja.engine.ledger(entry.fn, params, entry.x, ja.LRP(comp), target)
            r = ja.attribute(entry.fn, params, entry.x, target, ja.LRP(comp))
            check = ja.evaluation.checks.conservation(entry.fn, params, entry.x, r, target)
            absorbed = _absorbed_by_kind(rows)
            softmax = absorbed.get("softmax", 0.0)
            scale = np.abs(np.asarray(check.logit)).max()
            # every relevance that did not reach the input was absorbed by a segment
            missing = np.asarray(check.logit) - np.asarray(check.total)
            np.testing.assert_allclose(missing, sum(absorbed.values()), rtol=0, atol=1e-6 * scale)
            # and only the softmax absorbs anything (ε = 1e-12, no biases)
            others = sum(v for k, v in absorbed.items() if k != "softmax")
            assert np.abs(others).max() < 1e-6 * scale, absorbed
            np.testing.assert_allclose(missing, softmax, rtol=0, atol=1e-6 * scale)
            gaps[method] = np.asarray(check.error) / np.abs(np.asarray(check.logit))
        assert gaps["cp_lrp"].max() < 1e-7  # CP-LRP conserves
        assert gaps["attn_lrp"].max() > 1e-6  # AttnLRP's softmax absorbs a visible share


class _Layer(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return Z.PreNormBlock()(h), None


class _ScannedEncoder(nn.Module):
    """Blocks stacked as one ``nn.scan`` over layers (how Flax models repeat identical blocks)."""

    @nn.compact
    def __call__(self, h):
        h, _ = nn.scan(_Layer, variable_axes={"params": 0}, split_rngs={"params": True},
                       length=2)()(h, None)
        return nn.Dense(Z.CLASSES)(nn.LayerNorm()(h).mean(axis=1))


def _unrolled_encoder(params, h):
    p = params["params"]
    for i in range(2):
        layer = jax.tree_util.tree_map(lambda a: a[i], p["Scan_Layer_0"]["PreNormBlock_0"])
        h = Z.PreNormBlock().apply({"params": layer}, h)
    h = nn.LayerNorm().apply({"params": p["LayerNorm_0"]}, h).mean(axis=1)
    return nn.Dense(Z.CLASSES).apply({"params": p["Dense_0"]}, h)


def test_attention_inside_scan_over_layers_equals_unrolled():
    """Attention, softmax and LayerNorm segments inside a scan body (issues #19 and #21 together):
    the rolled model's AttnLRP, CP-LRP and DeepLIFT maps equal those of the same weights applied
    layer by layer."""
    with jax.enable_x64(True):
        model = _ScannedEncoder()
        x = jax.random.normal(jax.random.key(0), (3, Z.TOKENS, Z.DIM), jnp.float64)
        params = model.init(jax.random.key(1), x)
        np.testing.assert_allclose(model.apply(params, x), _unrolled_encoder(params, x), **TOL)
        for name, method in METHODS.items():
            rolled = ja.attribute(model.apply, params, x, method=method)
            np.testing.assert_allclose(rolled, ja.attribute(_unrolled_encoder, params, x, method=method),
                                       err_msg=name, **TOL)
        rows = ja.engine.audit(model.apply, params, x, METHODS["attn_lrp"])
    kinds = {r.kind for r in rows}
    assert {"control", "softmax", "bilinear", "normalise"} <= kinds


class _LinenTwinOfNNXViT(nn.Module):
    """``model_zoo.NNXViT`` written with Linen modules (same parameter tree). NNX's attention
    takes its softmax in float32; ``force_fp32_for_softmax`` makes Linen's do the same."""

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(Z.DIM, (4, 4), strides=(4, 4), padding="VALID", name="patch")(x)
        h = h.reshape(h.shape[0], -1, Z.DIM)
        h = h + self.param("pos", nn.initializers.zeros, (1, h.shape[1], Z.DIM), h.dtype)
        h = h + nn.MultiHeadDotProductAttention(Z.HEADS, force_fp32_for_softmax=True,
                                                name="attn")(nn.LayerNorm(name="ln1")(h))
        h = h + nn.Dense(Z.DIM, name="down")(nn.gelu(nn.Dense(Z.MLP, name="up")(
            nn.LayerNorm(name="ln2")(h))))
        return nn.Dense(Z.CLASSES, name="head")(nn.LayerNorm(name="ln3")(h).mean(axis=1))


def test_linen_equals_nnx_for_the_same_weights():
    """The same ViT as an NNX model (held, or split to a function) and as a Linen module with its
    weights: the same relevance. CP-LRP agrees to 1e-12; AttnLRP and DeepLIFT to 1e-6 relative,
    since both models take their softmax in float32 (NNX always does) and the two libraries
    convert at different places, so the softmax rules round at float32 in different spots."""
    from flax import nnx

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2,) + Z.IMAGE, jnp.float64)
        held = Z.NNXViT(nnx.gelu, jnp.float64, nnx.Rngs(3))
        graphdef, state = nnx.split(held)
        split_fn = lambda st, x_: nnx.merge(graphdef, st)(x_)
        linen, variables = _LinenTwinOfNNXViT(), {"params": nnx.to_pure_dict(state)}
        np.testing.assert_array_equal(linen.apply(variables, x), split_fn(state, x))
        for name, method in METHODS.items():
            want = np.asarray(ja.attribute(split_fn, state, x, method=method))
            np.testing.assert_array_equal(ja.attribute(held, None, x, method=method), want)
            got = np.asarray(ja.attribute(linen.apply, variables, x, method=method))
            tol = 1e-12 if name == "cp_lrp" else 1e-6
            np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max(), err_msg=name)
