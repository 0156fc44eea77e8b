"""Throughput of every method that applies on every model of the test zoo (issue #19).

The models are ``tests/model_zoo.py``'s (stock Flax: ViT, BERT over embeddings, GPT, LSTM, GRU,
ResNet bottlenecks, ConvNeXt, MLP-Mixer; NNX ViT and GRU) at the sizes given here. Prints one
JSON object per line (DESIGN.md §7):
``{"tool": "jaxattr", "what": "<model>.<method>", "model": ..., "method": ..., "batch": N,
"seconds": s, "images_per_s": r, "compile_seconds": c, "ratio_to_jax_grad": g,
"ratio_to_jax_grad_iqr": [q1, q3], "cost_vs_plain_jax_grad": p}``. ``seconds`` is the median
steady-state time of one call (images/s counts images or sequences). ``ratio_to_jax_grad`` is
time over the same model's ``jax.grad`` (a ``jax.vjp`` seeded with the one-hot argmax, as
jaxattr does), compiled with the options jaxattr compiles attributions with
(:func:`jaxattr.xla.backward_options`: YNNPACK for matrix products only), median and quartiles
of the ratio within each interleaved round; ``cost_vs_plain_jax_grad`` is time over
``jax.grad`` with XLA's defaults.
Method ``<name>`` is a call of ``ja.explain(fn, method)`` (its input checks included);
``<name>@jit`` is the same attribution inside one ``jax.jit`` with the same options, like the
baseline: the cost of the program alone, without the per-call Python work.
A rule-based method that does not apply (an operation no rule covers) gets one line with
``"applies": false`` and the reason.

    python benchmarks/zoo.py                  # dim 32, batch 32, 16x16 images, 16 tokens
    python benchmarks/zoo.py --small          # the test sizes, batch 2 (a smoke run)
    python benchmarks/zoo.py --models vit --batch 64 \
        --methods gradient lrp.attn_lrp lrp.cp_lrp deeplift deeplift.softmax_path  # issue #21
    python benchmarks/zoo.py --models lstm gru gru_nnx \
        --methods gradient lrp.epsilon_plus lrp.lstm_signal_take_all deeplift   # recurrent rows
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

import jaxattr as ja
from _timing import timed  # benchmarks/ is the script's directory

TESTS = pathlib.Path(__file__).resolve().parents[1] / "tests"

METHODS = {
    "gradient": ja.Gradient(),
    "gradient_x_input": ja.GradientXInput(),
    "integrated_gradients_8": ja.IntegratedGradients(steps=8),
    "smoothgrad_8": ja.SmoothGrad(samples=8),
    "guided_backprop": ja.GuidedBackprop(),
    "deconvnet": ja.DeconvNet(),
    "lrp.epsilon_plus": ja.LRP(),
    "lrp.attn_lrp": ja.LRP(ja.composites.attn_lrp()),
    "lrp.cp_lrp": ja.LRP(ja.composites.cp_lrp()),
    "lrp.lstm_signal_take_all": ja.LRP(ja.composites.lstm_signal_take_all()),
    "deeplift": ja.DeepLIFT(),
    "deeplift.softmax_path": ja.DeepLIFT(softmax="path"),
}


def _zoo():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import model_zoo as zoo  # tests/model_zoo.py

    return zoo


def _applies(entry, method) -> str | None:
    """``None`` if ``method`` traces on ``entry``, else the reason it does not."""
    try:
        jax.eval_shape(lambda p, x: ja.attribute(entry.fn, p, x, method=method),
                       entry.params, entry.x)
    except ja.UnsupportedPrimitiveError as err:
        return str(err).split(". ")[0]
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test sizes, batch 2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args(argv)

    zoo = _zoo()
    if args.small:
        zoo.configure(batch=2)
    else:
        zoo.configure(dim=args.dim, mlp=2 * args.dim, tokens=16, image=(16, 16, 3),
                      batch=args.batch)
    try:
        for entry in zoo.zoo(jnp.float32, args.models or list(zoo.NAMES)):
            _bench(entry, args)
    finally:
        zoo.configure()


def _bench(entry, args):
    fn, params, x = entry.fn, entry.params, entry.x

    def grad(p, x_):
        logits, vjp = jax.vjp(lambda v: fn(p, v), x_)
        onehot = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=logits.dtype)
        return vjp(onehot)[0]

    plain = jax.jit(grad)
    options = ja.xla.backward_options()  # what ja.explain compiles with
    tuned = jax.jit(grad, compiler_options=options)
    fns = {"jax.grad": lambda: tuned(params, x), "jax.grad.defaults": lambda: plain(params, x)}
    for name in args.methods:
        why = _applies(entry, METHODS[name])
        if why is not None:
            print(json.dumps({"tool": "jaxattr", "what": f"{entry.name}.{name}",
                              "model": entry.name, "method": name, "applies": False,
                              "reason": why}), flush=True)
            continue
        fns[name] = (lambda f: lambda: f(params, x))(ja.explain(fn, METHODS[name]))
        program = jax.jit(lambda p, x_, m=METHODS[name]: ja.attribute(fn, p, x_, method=m),
                          compiler_options=options)
        fns[name + "@jit"] = (lambda f: lambda: f(params, x))(program)
    t = timed(fns, args.repeats)
    batch = x.shape[0]
    for what, seconds in t.median.items():
        ratio, q1, q3 = t.ratio(what, "jax.grad")
        print(json.dumps({
            "tool": "jaxattr", "what": f"{entry.name}.{what}", "model": entry.name,
            "method": what, "batch": batch, "seconds": round(seconds, 6),
            "images_per_s": round(batch / seconds, 1),
            "compile_seconds": round(t.first[what] - seconds, 3),
            "ratio_to_jax_grad": round(ratio, 3), "ratio_to_jax_grad_iqr": [round(q1, 3),
                                                                              round(q3, 3)],
            "cost_vs_plain_jax_grad": round(t.ratio(what, "jax.grad.defaults")[0], 3)}),
            flush=True)


if __name__ == "__main__":
    main()
