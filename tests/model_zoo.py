"""A zoo of tiny models written with stock Flax modules, for tests of "any model" (issue #19).

Each :func:`zoo` entry is a :class:`Entry`: a pure ``fn(params, x) -> (batch, classes)`` logits,
its parameters, two input batches and how to rebuild ``fn`` with another activation function
(``make(act)``, the same parameters), so tests can compare Guided Backprop / DeconvNet with
``jax.grad`` of the model whose ReLUs are replaced by custom-VJP ReLUs (:func:`guided_relu`,
:func:`deconv_relu`). Widths are tiny (dim 8, 2 heads, 8×8×3 images with 4×4 patches,
sequences of 6 tokens) so that the tests stay fast on a shared CPU.

Models (Linen unless the name ends in ``_nnx``):

* ``vit`` / ``vit_mean_nnx``: patch conv, cls token (NNX: mean pooling), pre-norm block with
  multi-head attention, LayerNorm, GELU MLP (NNX: ReLU MLP, so Guided/DeconvNet differ);
* ``bert``: post-norm encoder over token *embeddings* (``Entry.embed`` maps ids to them) with a
  padding mask (in the parameters: ``{"model": ..., "mask": (batch, tokens)}``), tanh pooler on
  the first token;
* ``gpt``: pre-norm decoder with a causal mask, logits of the last token;
* ``lstm``, ``gru`` (``nn.RNN``, a ``scan``), ``gru_nnx`` (``nnx.GRUCell`` in ``lax.scan``): last
  hidden state;
* ``resnet``: ResNet-50-style stem (conv, BatchNorm, ReLU, max pool) and two bottleneck blocks
  (1×1, 3×3, 1×1 convs with BatchNorm, projection shortcut, the second strided);
* ``convnext``: patchify stem, LayerNorm, ConvNeXt block (depthwise conv, LayerNorm, GELU MLP,
  layer scale), global average pool;
* ``mixer``: MLP-Mixer (token- and channel-mixing GELU MLPs);
* ``gnn``: two rounds of message passing on a fixed graph over the tokens (gather at the
  senders, ``jax.ops.segment_sum`` at the receivers, ReLU), mean readout.

``make(act)`` rebuilds an entry that has ReLUs with custom-VJP ReLUs, same parameters.

Everything is built in the dtype asked for (float64 for comparisons at 1e-12).
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

DIM, HEADS, MLP, CLASSES, TOKENS, VOCAB, IMAGE = 8, 2, 16, 4, 6, 11, (8, 8, 3)
BATCH = 2


def configure(dim=8, mlp=16, tokens=6, image=(8, 8, 3), batch=2) -> None:
    """Set the zoo's sizes (the tests use the defaults; ``benchmarks/zoo.py`` larger ones).
    Models read them when they are built and traced."""
    global DIM, MLP, TOKENS, IMAGE, BATCH
    DIM, MLP, TOKENS, IMAGE, BATCH = dim, mlp, tokens, tuple(image), batch


# ---------------------------------------------------------------------------------------------
# ReLUs with a modified backward: the oracles of Guided Backprop and DeconvNet
# ---------------------------------------------------------------------------------------------

@jax.custom_vjp
def guided_relu(x):
    return jnp.maximum(x, 0)


guided_relu.defvjp(lambda x: (jnp.maximum(x, 0), x),
                   lambda x, g: (jnp.where(x > 0, jnp.maximum(g, 0), 0),))


@jax.custom_vjp
def deconv_relu(x):
    return jnp.maximum(x, 0)


deconv_relu.defvjp(lambda x: (jnp.maximum(x, 0), None), lambda _, g: (jnp.maximum(g, 0),))


# ---------------------------------------------------------------------------------------------
# Linen models
# ---------------------------------------------------------------------------------------------

class PreNormBlock(nn.Module):
    """``h + attn(LN(h))``, then ``h + MLP(LN(h))``."""

    act: Callable = nn.gelu

    @nn.compact
    def __call__(self, h, mask=None):
        h = h + nn.MultiHeadDotProductAttention(HEADS)(nn.LayerNorm()(h), mask=mask)
        return h + nn.Dense(h.shape[-1])(self.act(nn.Dense(MLP)(nn.LayerNorm()(h))))


class ViT(nn.Module):
    act: Callable = nn.gelu
    pool: str = "cls"

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(DIM, (4, 4), strides=(4, 4), padding="VALID")(x)
        h = h.reshape(h.shape[0], -1, DIM)
        if self.pool == "cls":
            cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, DIM), h.dtype)
            h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, DIM)), h], axis=1)
        h = h + self.param("pos", nn.initializers.normal(0.5), (1,) + h.shape[1:], h.dtype)
        h = nn.LayerNorm()(PreNormBlock(self.act)(h))
        return nn.Dense(CLASSES)(h[:, 0] if self.pool == "cls" else h.mean(axis=1))


class BERT(nn.Module):
    """Post-norm encoder classifying token ids, explained w.r.t. their embeddings."""

    act: Callable = nn.gelu

    def setup(self):
        self.embedding = nn.Embed(VOCAB, DIM)
        self.pos = self.param("pos", nn.initializers.normal(0.5), (1, TOKENS, DIM))
        self.attn = nn.MultiHeadDotProductAttention(HEADS)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(), nn.LayerNorm(), nn.LayerNorm()
        self.up, self.down = nn.Dense(MLP), nn.Dense(DIM)
        self.pooler, self.head = nn.Dense(DIM), nn.Dense(CLASSES)

    def embed(self, ids):
        return self.embedding(ids)

    def classify_ids(self, ids, mask):
        return self(self.embed(ids), mask)

    def __call__(self, emb, mask):
        h = self.ln1(emb + self.pos.astype(emb.dtype))
        h = self.ln2(h + self.attn(h, mask=nn.make_attention_mask(mask, mask)))
        h = self.ln3(h + self.down(self.act(self.up(h))))
        return self.head(jnp.tanh(self.pooler(h[:, 0])))


class GPT(nn.Module):
    """Pre-norm decoder with a causal mask over token embeddings; logits of the last token."""

    act: Callable = nn.gelu

    @nn.compact
    def __call__(self, emb):
        h = emb + self.param("pos", nn.initializers.normal(0.5), (1, TOKENS, DIM), emb.dtype)
        h = PreNormBlock(self.act)(h, mask=nn.make_causal_mask(jnp.ones(emb.shape[:2])))
        return nn.Dense(VOCAB)(nn.LayerNorm()(h))[:, -1]


class RNNClassifier(nn.Module):
    cell: str = "lstm"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        make = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[self.cell]
        h = nn.RNN(make(DIM, param_dtype=self.param_dtype))(x)
        return nn.Dense(CLASSES)(h[:, -1])


class Bottleneck(nn.Module):
    """ResNet-50's block: 1×1 → 3×3 (strided) → 1×1 ×4, BatchNorm after each, projection."""

    features: int
    strides: int = 1
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        bn = lambda: nn.BatchNorm(use_running_average=True)
        h = self.act(bn()(nn.Conv(self.features, (1, 1), use_bias=False)(x)))
        h = self.act(bn()(nn.Conv(self.features, (3, 3), strides=self.strides, use_bias=False)(h)))
        h = bn()(nn.Conv(4 * self.features, (1, 1), use_bias=False)(h))
        if x.shape[-1] != 4 * self.features or self.strides != 1:
            x = bn()(nn.Conv(4 * self.features, (1, 1), strides=self.strides, use_bias=False)(x))
        return self.act(h + x)


class ResNet(nn.Module):
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        h = self.act(nn.BatchNorm(use_running_average=True)(nn.Conv(DIM, (3, 3), use_bias=False)(x)))
        h = nn.max_pool(h, (2, 2), (2, 2))
        h = Bottleneck(2, act=self.act)(h)
        h = Bottleneck(4, strides=2, act=self.act)(h)
        return nn.Dense(CLASSES)(h.mean(axis=(1, 2)))


class ConvNeXt(nn.Module):
    act: Callable = nn.gelu

    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(nn.Conv(DIM, (2, 2), strides=(2, 2), padding="VALID")(x))
        y = nn.Conv(DIM, (3, 3), feature_group_count=DIM)(h)  # depthwise
        y = nn.Dense(DIM)(self.act(nn.Dense(4 * DIM)(nn.LayerNorm()(y))))
        h = h + self.param("layer_scale", nn.initializers.constant(0.5), (DIM,), y.dtype) * y
        return nn.Dense(CLASSES)(nn.LayerNorm()(h.mean(axis=(1, 2))))


class Mixer(nn.Module):
    act: Callable = nn.gelu

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(DIM, (4, 4), strides=(4, 4), padding="VALID")(x)
        h = h.reshape(h.shape[0], -1, DIM)
        mlp = lambda y, width, out: nn.Dense(out)(self.act(nn.Dense(width)(y)))
        y = nn.LayerNorm()(h).swapaxes(1, 2)
        h = h + mlp(y, DIM, h.shape[1]).swapaxes(1, 2)  # token mixing
        h = h + mlp(nn.LayerNorm()(h), MLP, DIM)  # channel mixing
        return nn.Dense(CLASSES)(nn.LayerNorm()(h).mean(axis=1))


#: a graph on the TOKENS nodes of every example: a ring, two chords and a double edge
def _edges():
    ring = np.arange(TOKENS)
    senders = np.concatenate([ring, [0, 2, 2]])
    receivers = np.concatenate([(ring + 1) % TOKENS, [3, TOKENS - 1, TOKENS - 1]])
    return jnp.asarray(senders), jnp.asarray(receivers)


class GNN(nn.Module):
    """Message passing (Gilmer et al. 2017), as jraph writes it: each round gathers the
    senders' features, transforms them (``nn.Dense``), sums them at the receivers
    (``jax.ops.segment_sum``, a scatter-add) and applies ``act``; mean readout over nodes."""
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):  # (batch, nodes, features)
        senders, receivers = _edges()
        h = nn.Dense(DIM)(x)
        for _ in range(2):
            msg = nn.Dense(DIM)(h[:, senders]).swapaxes(0, 1)  # (edges, batch, DIM)
            agg = jax.ops.segment_sum(msg, receivers, num_segments=TOKENS).swapaxes(0, 1)
            h = self.act(agg + nn.Dense(DIM, use_bias=False)(h))
        return nn.Dense(CLASSES)(h.mean(axis=1))


# ---------------------------------------------------------------------------------------------
# NNX models
# ---------------------------------------------------------------------------------------------

class NNXViT(nnx.Module):
    """Mean-pooled ViT: patch conv, attention, LayerNorm, GELU (or ``act``) MLP."""

    def __init__(self, act, dtype, rngs):
        kw = dict(param_dtype=dtype, rngs=rngs)
        self.act = act
        self.patch = nnx.Conv(3, DIM, (4, 4), strides=(4, 4), padding="VALID", **kw)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (1, (IMAGE[0] // 4) * (IMAGE[1] // 4), DIM),
                                              dtype) * 0.5)
        self.ln1, self.ln2, self.ln3 = (nnx.LayerNorm(DIM, **kw) for _ in range(3))
        self.attn = nnx.MultiHeadAttention(HEADS, DIM, decode=False, **kw)
        self.up, self.down = nnx.Linear(DIM, MLP, **kw), nnx.Linear(MLP, DIM, **kw)
        self.head = nnx.Linear(DIM, CLASSES, **kw)

    def __call__(self, x):
        h = self.patch(x)
        h = h.reshape(h.shape[0], -1, DIM) + self.pos[...]
        h = h + self.attn(self.ln1(h))
        h = h + self.down(self.act(self.up(self.ln2(h))))
        return self.head(self.ln3(h).mean(axis=1))


class NNXGRU(nnx.Module):
    """``nnx.GRUCell`` under ``jax.lax.scan`` (``nnx.RNN``'s ``nnx.scan`` refuses parameters
    traced by an outer ``jit`` inside ``jax.grad``, so plain ``jax.grad`` baselines fail)."""

    def __init__(self, features, dtype, rngs):
        self.cell = nnx.GRUCell(features, DIM, param_dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(DIM, CLASSES, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        carry = jnp.zeros((x.shape[0], DIM), x.dtype)
        h, _ = jax.lax.scan(lambda c, xt: self.cell(c, xt), carry, x.swapaxes(0, 1))
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------------

class Entry(NamedTuple):
    name: str
    fn: Callable  # (params, x) -> (batch, classes)
    params: Any
    x: jax.Array  # batch of BATCH examples
    make: Optional[Callable]  # act -> fn with that activation, same params
    has_relu: bool
    batch_params: Any = None  # pytree prefix: 0 where a params leaf carries the batch axis
    embed: Optional[Callable] = None  # ids -> x (BERT)

    def example(self, i: int):
        """``(params, x)`` of example ``i`` alone (batch-carrying params sliced too)."""
        return _slice_params(self.params, self.batch_params, i), self.x[i:i + 1]


def run_program(name: str, program: Callable, compiler_options=None):
    """``(entry, results)``: the float64 zoo model ``name`` and ``program(entry)(params, x)``
    compiled once (``compiler_options``) and run, its results as numpy arrays."""
    with jax.enable_x64(True):
        (entry,) = zoo(jnp.float64, [name])
        lowered = jax.jit(program(entry)).lower(entry.params, entry.x)
        out = lowered.compile(compiler_options=compiler_options)(entry.params, entry.x)
        return entry, jax.tree_util.tree_map(np.asarray, out)


def per_example_params(entry: "Entry", params):
    """``params`` for ``jax.vmap`` over examples of ``x[:, None]``: leaves that carry the batch
    (``entry.batch_params`` axis 0, e.g. a padding mask) get a length-1 axis per example."""
    axes = entry.batch_params
    if axes is None:
        return params
    return jax.tree_util.tree_map(lambda ax, a: a if ax is None else a[:, None], axes, params,
                                  is_leaf=lambda v: v is None)


def _slice_params(params, axes, i):
    if axes is None:
        return params
    return jax.tree_util.tree_map(lambda ax, a: a if ax is None else a[i:i + 1], axes, params,
                                  is_leaf=lambda v: v is None)


def _perturb_stats(params, key):
    """BatchNorm statistics away from (0, 1), so that inference-mode BN is not the identity."""
    def f(path, leaf):
        name = jax.tree_util.keystr(path)
        k = jax.random.fold_in(key, zlib.crc32(name.encode()) % (2 ** 31))
        if "'mean'" in name:
            return leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype)
        if "'var'" in name:
            return leaf * jax.random.uniform(k, leaf.shape, leaf.dtype, 0.5, 1.5)
        return leaf
    return jax.tree_util.tree_map_with_path(f, params)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _linen(name, module_of, x, has_relu, **kw):
    """An entry of a Linen model ``module_of(act)`` (``None``: its default) initialised on ``x``."""
    module = module_of(None)
    params = _cast(module.init(jax.random.key(zlib.crc32(name.encode()) % 1000), x), x.dtype)
    params = _perturb_stats(params, jax.random.key(7))

    def make(act):
        return module_of(act).apply

    return Entry(name, module.apply, params, x, make, has_relu, **kw)


def _act_module(cls, default, **fields):
    return lambda act: cls(act=default if act is None else act, **fields)


def zoo(dtype=jnp.float64, names=None) -> list:
    """The zoo's entries (``names``: a subset), inputs and parameters in ``dtype``."""
    k = iter(jax.random.split(jax.random.key(42), 64))
    image = lambda: jax.random.uniform(next(k), (BATCH,) + IMAGE, dtype)
    seq = lambda: jax.random.normal(next(k), (BATCH, TOKENS, 4), dtype)
    builders = {
        "vit": lambda: _linen("vit", _act_module(ViT, nn.gelu), image(), False),
        "vit_mean_nnx": lambda: _nnx_entry("vit_mean_nnx", image(), dtype),
        "bert": lambda: _bert(dtype, next(k)),
        "gpt": lambda: _gpt(dtype, next(k)),
        "lstm": lambda: _linen("lstm", lambda act: RNNClassifier("lstm", dtype), seq(), False),
        "gru": lambda: _linen("gru", lambda act: RNNClassifier("gru", dtype), seq(), False),
        "gru_nnx": lambda: _nnx_entry("gru_nnx", seq(), dtype),
        "resnet": lambda: _linen("resnet", _act_module(ResNet, nn.relu), image(), True),
        "convnext": lambda: _linen("convnext", _act_module(ConvNeXt, nn.gelu), image(),
                                   False),
        "mixer": lambda: _linen("mixer", _act_module(Mixer, nn.gelu), image(), False),
        "gnn": lambda: _linen("gnn", _act_module(GNN, nn.relu), seq(), True),
    }
    return [builders[n]() for n in (names or builders)]


NAMES = ("vit", "vit_mean_nnx", "bert", "gpt", "lstm", "gru", "gru_nnx", "resnet", "convnext",
         "mixer", "gnn")


def _nnx_entry(name, x, dtype):
    rngs = lambda: nnx.Rngs(3)
    if name == "vit_mean_nnx":
        build = lambda act: NNXViT(act, dtype, rngs())
        state = nnx.split(build(nnx.relu))[1]

        def make(act):
            gd = nnx.split(build(act))[0]
            return lambda st, x_: nnx.merge(gd, st)(x_)

        return Entry(name, make(nnx.relu), state, x, make, True)
    graphdef, state = nnx.split(NNXGRU(x.shape[-1], dtype, rngs()))
    return Entry(name, lambda st, x_: nnx.merge(graphdef, st)(x_), state, x, None, False)


def _bert(dtype, key):
    model = BERT()
    ids = jax.random.randint(key, (BATCH, TOKENS), 1, VOCAB)
    lengths = TOKENS - 2 * (jnp.arange(BATCH) % 2)  # every other example: 2 pads at the end
    mask = jnp.arange(TOKENS)[None, :] < lengths[:, None]
    ids = jnp.where(mask, ids, 0)
    variables = _cast(model.init(jax.random.key(5), ids, mask, method=BERT.classify_ids), dtype)
    embed = lambda i: model.apply(variables, i, method=BERT.embed)
    x = embed(ids)

    def make(act):
        m = BERT(act=act)
        return lambda p, e: m.apply(p["model"], e, p["mask"])

    params = {"model": variables, "mask": mask}
    return Entry("bert", make(nn.gelu), params, x, None, False,
                 batch_params={"model": None, "mask": 0}, embed=embed)


def _gpt(dtype, key):
    model = GPT()
    x = jax.random.normal(key, (BATCH, TOKENS, DIM), dtype)
    params = _cast(model.init(jax.random.key(6), x), dtype)
    return Entry("gpt", model.apply, params, x, None, False)


__all__ = ["Entry", "NAMES", "configure", "zoo", "guided_relu", "deconv_relu"]
