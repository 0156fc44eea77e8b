"""jaxattr side by side with Captum, Zennit, Quantus and LXT: throughput on the paper CNN and a ViT.

The same network (``PaperCNN``: 3×3 SAME convs 32,32 | pool | 64,64 | pool | 128,128 | pool |
dense 512 | dense 10, 32×32×3 inputs, float32) is built in Flax and in PyTorch from one set of
weights (``tests/peers/_torch_nets.py``) and every matching method is timed on both, each pair
*interleaved* (jaxattr, peer, jaxattr, peer, …) after a warm-up, so that a busy shared machine
slows both alike; ``seconds`` is the median of ``--repeats`` calls. jaxattr's compile time (first
call minus the median) is reported apart; for the peers the same number is their warm-up cost.

Every peer runs at its own fastest documented setting. Captum's Integrated Gradients is timed
at every ``internal_batch_size`` of ``--ig-sweep`` (multiples of the batch: 1, 2, 4, 8), all in
the same interleaved rounds, and compared at the fastest (its JSON line says which,
``"fastest": true``); ``--ig-chunks`` times jaxattr's IG at other ``chunk`` values in the same
rounds (how the per-backend default :data:`jaxattr.methods.IG_CHUNK_IMAGES` was chosen).

DeepLIFT is timed like for like: Captum on the twin with a ``Clone`` between each ReLU and max
pool (without it Captum silently drops its max-pool rule, captum#1104), both on the paper CNN
with its conv biases made non-positive (``_torch_nets.nonpositive_conv_biases``), so that at the
zero reference every conv-stack activation is 0 and every max-pool rule — Captum's, jaxattr's
``"gradient"`` and its default ``"interpolate"`` — is the gradient there: the two compute the
same thing. This is checked before timing (``max_rel_diff`` on the JSON line; float32 runs
stop above 1e-3). With the stock biases no jaxattr rule equals Captum's (it routes Δy to the
winner at x or at x₀, whichever window maximum is larger, divided by that element's Δx):
``tests/peers/test_captum.py`` shows both facts in float64. Rows: ``deeplift.maxpool_gradient``
(``maxpool="gradient"``, the DeepLIFT authors' default) and ``deeplift`` (jaxattr's default
``"interpolate"``), against the same Captum call.

Pairs: Gradient / Gradient×Input / Guided Backprop / DeconvNet / Integrated Gradients (32
Gauss–Legendre nodes) / DeepLIFT against Captum; the LRP composites against Zennit; region
perturbation (``patch 8``, 16 regions, 16 steps, baseline 0) and pixel flipping against Quantus'
``RegionPerturbation`` and ``PixelFlipping`` (batch ``--aopc-batch``). Quantus' pixel flipping
needs ``features_in_step`` to divide H·W while it flips C·H·W features, so 16 steps are
impossible on 32×32×3: it runs ``features_in_step=128`` (24 steps) against jaxattr's
``region=1, steps=24``.

AttnLRP and CP-LRP (rows ``attn_lrp``, ``cp_lrp``) are timed against LXT (Achtibat et al.'s
reference implementation) on a small ViT instead (``tests/peers/_lxt_twins.py``: ``--vit-image``
NHWC RGB images cut into ``--vit-patch`` squares, a cls token, ``--vit-blocks`` pre-norm blocks
of ``--vit-heads``-head attention and a GELU MLP of width ``--vit-mlp``, dimension ``--vit-dim``,
mean pooling, 10 classes; batch ``--vit-batch``; defaults 16×16×3, 4×4 → 16 tokens + cls, 64, 4
heads, 128, 2 blocks, batch 64): jaxattr's ``LRP(composites.attn_lrp(1e-6))`` (``cp_lrp``) of
the Flax model against its torch twin written with ``lxt.explicit.functional``, every ε 1e-6,
weights converted once. LXT runs at its fastest documented setting without Hugging Face: the
explicit functional rules (plain functions, no modules: nothing to put in eval mode), autograd
on (its relevance is the backward pass: no ``torch.no_grad``), its ``inplace=True`` backward for
``add2`` and ``matmul``, and torch's threads the faster of 1 and ``--threads`` (timed before
the race, in interleaved rounds: ``threads_seconds`` on LXT's line, the choice in
``peer_setting``; its many small elementwise kernels can run 5× slower on 2 threads than on 1
on a busy 2-core machine). LXT's faster
``lxt.efficient`` path (monkey patches whose relevance is gradient × input; CP-LRP only for
torchvision's ViT) cannot be timed: importing it imports ``transformers`` (every model it
patches), not a dependency here. LXT has no explicit CP-LRP;
the twin's is LXT's rules with the queries and keys detached and ``A·V`` as the ε-rule of
``V -> A·V`` (see ``_lxt_twins.Twin``). The two sides are checked equal before timing
(``max_rel_diff``) at ε = 1e-10, where their stabilisers agree (``z + ε`` in LXT,
``z + ε·sign(z)`` in jaxattr); at the timed ε = 1e-6 the difference the stabilisers make on the
ViT's near-cancelling sums is reported too (``max_rel_diff_timed``, ~5e-3). The same rounds
time the ViT's plain ``jax.grad`` (a ``jax.vjp`` of the target logits, compiled with the options
jaxattr compiles with, :func:`jaxattr.xla.backward_options`, faster here than XLA's defaults;
a ``{"tool": "jax", ...}`` line with its own ``vs_peer``): AttnLRP's relevance passes every
operation the gradient passes (its identity rules on GELU and LayerNorm save a little, its
ε-divisions cost a little), so that ratio is about the most any AttnLRP computed as one backward
pass can reach on the machine. These rows run ``--vit-repeats`` rounds (default 30).

Prints one JSON object per line (DESIGN §7)::

    {"tool": "jaxattr"|"captum"|"zennit"|"quantus"|"lxt", "what": ..., "batch": N, "seconds": s,
     "images_per_s": r, "compile_seconds": c, "load_avg": [1, 5, 15 min], ...}

(the jaxattr line of a pair also has ``vs_peer`` and ``vs_peer_iqr``, and ``peer_setting``
where the peer was swept), then a Markdown table of the speed-ups jaxattr / peer: the median
over the rounds of the ratio within each round (peer seconds / jaxattr seconds), with its
quartiles. The machine's load average is printed with every pair: on a shared box, compare
ratios, not images/s. Needs the ``[peers]`` extra.

    python benchmarks/peers.py --batch 128 --repeats 5
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "peers"))
from _timing import timed  # noqa: E402  (benchmarks/ is the script's directory)

#: issue 8's targets: jaxattr images/s over the peer's, at batch 128 on a 2-core CPU
TARGETS = {
    "gradient": 1.0, "gradient_x_input": 1.0, "guided_backprop": 1.0, "deconvnet": 1.0,
    "integrated_gradients_32": 1.0, "deeplift.maxpool_gradient": 3.0, "deeplift": 3.0,
    "lrp.epsilon_plus": 2.0, "lrp.epsilon_plus_flat": 2.0, "lrp.epsilon_alpha2_beta1": 2.0,
    "lrp.epsilon_gamma_box": 3.0,
    "region_perturbation_16": 1.0, "pixel_flipping_24": 2.0,
    "attn_lrp": 1.5,  # issue 21, against LXT on the ViT
}

#: the network of the DeepLIFT rows (see the module docstring)
DL_NETWORK = "paper_cnn, conv biases <= 0, torch: Clone before each max pool"
#: the network of the LXT rows
VIT_NETWORK = ("vit: {image}x{image}x3, patch {patch}, dim {dim}, {heads} heads, mlp {mlp}, "
               "{blocks} blocks")
#: ε of every ε-rule in the LXT rows (LXT's default for linear layers and layer norm)
VIT_EPS = 1e-6
#: ε of the LXT rows' equality check: LXT stabilises ``z + ε``, jaxattr ``z + ε·sign(z)``; at
#: 1e-6 a ViT's near-cancelling sums make them differ by ~5e-3 of the largest attribution, at
#: 1e-10 they agree to ~1e-6 in float32
CHECK_EPS = 1e-10
#: the ``jax.grad`` line of the LXT rows
REFERENCE = ("plain jax.vjp of the target logit, jaxattr's compiler options: not a jaxattr "
             "method, about the bound of one that passes every operation the gradient passes")
#: float32 results of the two sides that differ by more than this (relative to the largest
#: attribution) compute different things: the benchmark stops
SAME_RTOL = 1e-3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--aopc-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16, help="region-perturbation steps (= regions)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--only", nargs="*", default=None, help="run only these 'what' names")
    parser.add_argument("--ig-sweep", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="Captum IG internal_batch_size values to time, as multiples of --batch")
    parser.add_argument("--ig-chunks", type=int, nargs="*", default=[],
                        help="also time jaxattr's IG at these chunk values (nodes per vmapped "
                             "gradient), in the same rounds as its default")
    parser.add_argument("--vit-batch", type=int, default=64, help="batch of the LXT (ViT) rows")
    parser.add_argument("--vit-image", type=int, default=16, help="ViT image side (RGB)")
    parser.add_argument("--vit-patch", type=int, default=4, help="ViT patch side")
    parser.add_argument("--vit-dim", type=int, default=64)
    parser.add_argument("--vit-heads", type=int, default=4)
    parser.add_argument("--vit-mlp", type=int, default=128)
    parser.add_argument("--vit-blocks", type=int, default=2)
    parser.add_argument("--vit-repeats", type=int, default=30,
                        help="rounds of the LXT rows (their calls take milliseconds: more rounds "
                             "than --repeats for the same noise)")
    parser.add_argument("--device", default="cpu", help="torch device of the peers: cpu, cuda")
    parser.add_argument("--precision", default="float32", choices=("float32", "fast"),
                        help="float32: jaxattr exact, torch TF32 off (cudnn and matmul); fast: the "
                             "backends' defaults, torch TF32 on")
    args = parser.parse_args(argv)

    # torch and torchvision first: loading triton (torchvision -> torch._dynamo -> triton) after
    # TensorFlow (which Quantus imports when it is installed) or jaxlib segfaults here
    import torch
    import torchvision  # noqa: F401
    import captum.attr as CA
    import quantus
    from zennit import composites as ZC

    import jax
    import jax.numpy as jnp

    import jaxattr as ja
    import _torch_nets as T

    torch.set_num_threads(args.threads)
    tf32 = args.precision == "fast"  # matching precision on both sides
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    warnings.simplefilter("ignore")
    pair = T.make_pair("paper_cnn_full", dtype=np.float32)
    model, variables = pair.torch_model.to(args.device), pair.variables
    # DeepLIFT like for like: Captum's max-pool rule active (Clone) and equal to jaxattr's
    dl_pair = T.make_pair("paper_cnn_full", dtype=np.float32, clone_before_pool=True,
                          transform=T.nonpositive_conv_biases)
    dl_model = dl_pair.torch_model.to(args.device)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, 32, 32, 3)).astype(np.float32)
    target = T.jax_logits(pair, x).argmax(-1)
    xj, tj = jnp.asarray(x), jnp.asarray(target)
    xt, tt = T.to_torch(x).to(args.device), torch.as_tensor(target).to(args.device)

    def sync(out):
        """Wait for an accelerator's queue, so that a timed call includes the work."""
        if args.device != "cpu":
            torch.cuda.synchronize()
        return out

    def jaxattr_fn(method, on=pair, x=None, t=None):
        fn = ja.explain(on.apply_fn, method, precision=args.precision)
        x, t = (xj, tj) if x is None else (x, t)
        return lambda: jax.block_until_ready(fn(on.variables, x, t))

    def captum_fn(make, net=model, **kwargs):
        algo = make(net)

        def run():
            return sync(algo.attribute(xt.clone().requires_grad_(True), target=tt, **kwargs))
        return run

    def zennit_fn(composite):
        from zennit.attribution import Gradient

        def seed(out):
            return torch.nn.functional.one_hot(tt, out.shape[-1]).to(out) * out

        attributor = Gradient(model, composite)
        attributor.__enter__()  # composite registered once, as in a `with` block around a loop

        def run():
            return sync(attributor(xt.clone().requires_grad_(True), seed)[1])
        run.close = lambda: attributor.__exit__(None, None, None)
        return run

    def one(fn, **fields):
        """A single setting: {label: (fn, fields of its JSON line)}."""
        return {"": (fn, fields)}

    ig_ours = {"": (jaxattr_fn(ja.IntegratedGradients(steps=32)), {
        "chunk": ja.IntegratedGradients(steps=32).resolved_chunk(args.batch, jax.default_backend()),
        "chunk_default": True})}
    for c in args.ig_chunks:
        ig_ours[f"chunk={c}"] = (jaxattr_fn(ja.IntegratedGradients(steps=32, chunk=c)), {"chunk": c})
    ig_captum = {f"internal_batch_size={k * args.batch}": (
        captum_fn(CA.IntegratedGradients, method="gausslegendre", n_steps=32,
                  internal_batch_size=k * args.batch), {"internal_batch_size": k * args.batch})
        for k in args.ig_sweep}
    dl_captum = lambda: one(captum_fn(CA.DeepLift, net=dl_model), network=DL_NETWORK)
    cases = [
        ("gradient", one(jaxattr_fn(ja.Gradient())), "captum", one(captum_fn(CA.Saliency, abs=False))),
        ("gradient_x_input", one(jaxattr_fn(ja.GradientXInput())), "captum",
         one(captum_fn(CA.InputXGradient))),
        ("guided_backprop", one(jaxattr_fn(ja.GuidedBackprop())), "captum",
         one(captum_fn(CA.GuidedBackprop))),
        ("deconvnet", one(jaxattr_fn(ja.DeconvNet())), "captum", one(captum_fn(CA.Deconvolution))),
        ("integrated_gradients_32", ig_ours, "captum", ig_captum),
        ("deeplift.maxpool_gradient",
         one(jaxattr_fn(ja.DeepLIFT(maxpool="gradient"), dl_pair), maxpool="gradient",
             network=DL_NETWORK), "captum", dl_captum),
        ("deeplift", one(jaxattr_fn(ja.DeepLIFT(), dl_pair), maxpool="interpolate",
                         network=DL_NETWORK), "captum", dl_captum),
        ("lrp.epsilon_plus", ja.LRP(ja.composites.epsilon_plus()), "zennit",
         lambda: zennit_fn(ZC.EpsilonPlus())),
        ("lrp.epsilon_plus_flat", ja.LRP(ja.composites.epsilon_plus_flat()), "zennit",
         lambda: zennit_fn(ZC.EpsilonPlusFlat())),
        ("lrp.epsilon_alpha2_beta1", ja.LRP(ja.composites.epsilon_alpha2_beta1()), "zennit",
         lambda: zennit_fn(ZC.EpsilonAlpha2Beta1())),
        ("lrp.epsilon_gamma_box", ja.LRP(ja.composites.epsilon_gamma_box(0.0, 1.0)), "zennit",
         lambda: zennit_fn(ZC.EpsilonGammaBox(low=0.0, high=1.0))),
    ]

    # evaluation: batch --aopc-batch, deterministic baseline 0
    xa, ta = x[: args.aopc_batch], target[: args.aopc_batch]
    relevance = rng.normal(size=xa.shape).astype(np.float32)
    per_pixel = np.broadcast_to(relevance.sum(-1, keepdims=True), xa.shape).copy()
    xa_nchw = T.to_torch(xa).numpy()
    quiet = {"disable_warnings": True, "display_progressbar": False, "normalise": False}
    patch = 32 // int(round(args.steps ** 0.5))

    def curve_fn(rel, **kwargs):
        xs, rs, ts = jnp.asarray(xa), jnp.asarray(rel), jnp.asarray(ta)
        return lambda: jax.block_until_ready(ja.evaluation.perturbation_curve(
            pair.apply_fn, variables, xs, ts, rs, perturbation="zeros", progress=False,
            precision=args.precision, **kwargs))

    def quantus_fn(metric, rel):
        a = T.to_torch(rel).numpy()
        return lambda: metric(model=model, x_batch=xa_nchw, y_batch=ta, a_batch=a,
                              channel_first=True, softmax=True, device=args.device,
                              batch_size=args.aopc_batch)

    region = f"region_perturbation_{args.steps}"
    evals = [
        (region, curve_fn(relevance, region=patch, steps=args.steps), "quantus",
         lambda: quantus_fn(quantus.RegionPerturbation(
             patch_size=patch, regions_evaluation=args.steps, perturb_baseline=0.0, **quiet), relevance)),
        ("pixel_flipping_24", curve_fn(per_pixel, region=1, steps=24), "quantus",
         lambda: quantus_fn(quantus.PixelFlipping(
             features_in_step=128, perturb_baseline=0.0, **quiet), per_pixel)),
    ]

    rows = []

    def emit(tool, what, batch, seconds, compile_s, **extra):
        rec = {"tool": tool, "what": what, "batch": batch, "seconds": round(seconds, 5),
               "precision": args.precision, "device": args.device,
               "images_per_s": round(batch / seconds, 2), "compile_seconds": round(compile_s, 3),
               **extra}
        print(json.dumps(rec), flush=True)
        return rec

    def race(what, batch, ours, peer_tool, peers, repeats=None):
        """``ours``/``peers``: ``{label: (fn, fields)}``, jaxattr's default setting first. Warm
        every function, then interleave ``repeats`` timed calls of all of them; medians, and the
        speed-up of jaxattr's default as the median (and quartiles) of the per-round ratio peer
        time / jaxattr time, against the peer's fastest setting (smallest median)."""
        fns = {("ours", k): f for k, (f, _) in ours.items()}
        fns.update({("peer", k): f for k, (f, _) in peers.items()})
        t = timed(fns, repeats or args.repeats)
        load = [round(v, 2) for v in os.getloadavg()]
        med, first = t.median, t.first
        best = min((k for k in fns if k[0] == "peer"), key=med.get)
        swept = len(peers) > 1
        recs = {}
        for key in fns:
            side, label = key
            fields = (ours if side == "ours" else peers)[label][1]
            extra = dict(fields)
            if side == "ours":
                ratio, q1, q3 = t.ratio(best, key)
                extra.update(vs_peer=round(ratio, 3), vs_peer_iqr=[round(q1, 3), round(q3, 3)])
                if swept:
                    extra["peer_setting"] = peers[best[1]][1]
            elif swept:
                extra["fastest"] = key == best
            # a function first called before (by same_result) says when it was
            first_s = extra.pop("first_call_seconds", first[key])
            tool = extra.pop("tool", "jaxattr") if side == "ours" else peer_tool
            recs[key] = emit(tool, what, batch, med[key],
                             max(first_s - med[key], 0.0), load_avg=load, **extra)
        floor = recs.get(("ours", "jax.grad"))
        rows.append((what, recs[("ours", next(iter(ours)))], recs[best], load, floor))

    def same_result(what, ours, peer, nchw=True):
        """Both sides once, before timing: their largest difference relative to the largest
        attribution (``max_rel_diff``); float32 runs stop when it shows different computations.
        ``nchw``: the peer's attribution is NCHW (else already laid out as jaxattr's)."""
        a = np.asarray(ours())
        b = peer().detach().cpu().numpy()
        b = b.transpose(0, 2, 3, 1) if nchw else b
        diff = float(np.abs(a - b).max() / np.abs(b).max())
        if args.precision == "float32" and diff > SAME_RTOL:
            raise SystemExit(f"{what}: jaxattr and the peer differ by {diff:.2e} of the largest "
                             "attribution: they do not compute the same thing")
        return diff

    for what, ours, tool, peers in cases:
        if args.only and what not in args.only:
            continue
        if tool == "zennit":  # composites register hooks on the model: one at a time
            ours, peer = one(jaxattr_fn(ours)), peers()
            peers = one(peer)
        else:
            peer = None
            peers = peers() if callable(peers) else peers
        try:
            if what.startswith("deeplift"):
                (fn, fields), = ours.values()
                (peer_fn, _), = peers.values()
                fields["max_rel_diff"] = float(f"{same_result(what, fn, peer_fn):.3g}")
            race(what, args.batch, ours, tool, peers)
        finally:
            getattr(peer, "close", lambda: None)()  # remove Zennit's hooks
    for what, ours, tool, make_peer in evals:
        if args.only and what not in args.only:
            continue
        race(what, args.aopc_batch, one(ours), tool, one(make_peer()))

    lxt_rows = [w for w in ("attn_lrp", "cp_lrp") if not args.only or w in args.only]
    try:
        import _lxt_twins as L  # imports lxt (pip install --no-deps lxt)
    except ImportError as err:
        if args.only and lxt_rows:
            raise
        if lxt_rows:
            print(f"skipped attn_lrp, cp_lrp: {err}", file=sys.stderr)
        lxt_rows = []
    if lxt_rows:

        vit = dict(image=args.vit_image, patch=args.vit_patch, dim=args.vit_dim,
                   heads=args.vit_heads, mlp=args.vit_mlp, blocks=args.vit_blocks)
        network = VIT_NETWORK.format(**vit)
        vit_model = L.ViT(args.vit_dim, args.vit_heads, args.vit_mlp, 10,
                          tokens=(args.vit_image // args.vit_patch) ** 2, blocks=args.vit_blocks,
                          patch=args.vit_patch)
        xv = rng.uniform(size=(args.vit_batch, args.vit_image, args.vit_image, 3)).astype(np.float32)
        vit_vars = L.noisy(vit_model.init(jax.random.key(0), xv[:1]), jax.random.key(1))
        vit_pair = argparse.Namespace(apply_fn=vit_model.apply, variables=vit_vars)
        tv = np.asarray(vit_model.apply(vit_vars, xv)).argmax(-1)
        xvj, tvj = jnp.asarray(xv), jnp.asarray(tv)
        xvt, tvt = torch.as_tensor(xv).to(args.device), torch.as_tensor(tv).to(args.device)

        @functools.partial(jax.jit, compiler_options=ja.xla.backward_options())
        def plain_grad(variables, x, t):
            logits, vjp = jax.vjp(lambda v: vit_model.apply(variables, v), x)
            return vjp(jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype))[0]

        def vit_grad():
            return jax.block_until_ready(plain_grad(vit_vars, xvj, tvj))

        def vit_fns(what, eps, threads=args.threads):
            ours_fn = jaxattr_fn(ja.LRP(getattr(ja.composites, what)(eps)), vit_pair, xvj, tvj)
            twin = L.Twin(vit_vars, heads=args.vit_heads, patch=args.vit_patch,
                          dtype=torch.float32, eps=eps, cp=what == "cp_lrp", inplace=True,
                          device=args.device)

            def peer_fn():
                torch.set_num_threads(threads)
                try:
                    return sync(twin.attribute(xvt, tvt)[1])
                finally:
                    torch.set_num_threads(args.threads)
            return ours_fn, peer_fn

        for what in lxt_rows:
            # the same computation: at ε = CHECK_EPS the two stabilisers agree (float32 too)
            diff = same_result(what, *vit_fns(what, CHECK_EPS), nchw=False)
            ours_fn, peer_fn = vit_fns(what, VIT_EPS)
            # at the timed ε they differ by the stabiliser, z + ε against z + ε·sign(z)
            want = peer_fn().cpu().numpy()
            start = time.perf_counter()
            got = np.asarray(ours_fn())  # its first call: compiles
            first_s = time.perf_counter() - start
            diff_timed = float(np.abs(got - want).max() / np.abs(want).max())
            # torch's threads: LXT's many small elementwise kernels can lose more to a busy
            # machine with 2 threads than they gain (5× slower at load 7 on 2 cores). Chosen
            # before the race, which then runs the faster alone: torch's idle threads spin for a
            # while after each call and would slow the calls that follow them
            counts = sorted({1, args.threads})
            sweep = timed({n: vit_fns(what, VIT_EPS, n)[1] for n in counts},
                          max(3, args.repeats // 3))
            threads = min(counts, key=sweep.median.get)
            setting = {"rules": "lxt.explicit.functional", "inplace": True, "threads": threads}
            ours = one(ours_fn, network=network, epsilon=VIT_EPS,
                       max_rel_diff=float(f"{diff:.3g}"), max_rel_diff_epsilon=CHECK_EPS,
                       max_rel_diff_timed=float(f"{diff_timed:.3g}"), first_call_seconds=first_s,
                       peer_setting=setting)
            # the model's plain input gradient in the same rounds: AttnLRP passes every
            # operation the gradient does, so the gradient's vs_peer is about the most it can reach
            ours["jax.grad"] = (vit_grad, {"tool": "jax", "network": network,
                                           "reference": REFERENCE})
            race(what, args.vit_batch, ours,
                 "lxt", one(vit_fns(what, VIT_EPS, threads)[1], **setting, threads_seconds={
                     str(n): round(sweep.median[n], 5) for n in counts}),
                 repeats=args.vit_repeats)

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n{cpu}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.devices()[0].platform}), "
          f"torch {torch.__version__} ({args.threads} threads); paper CNN (LXT rows: the ViT) float32; medians of "
          f"{args.repeats} interleaved calls ({args.vit_repeats} for the LXT rows); load average after each pair in the last column\n")
    print("| what | batch | jaxattr img/s | peer | peer img/s | jaxattr / peer (quartiles) | "
          "target | jaxattr compile s | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for what, a, b, load, _ in rows:
        ratio, (q1, q3) = a["vs_peer"], a["vs_peer_iqr"]
        goal = TARGETS.get(what)
        mark = "" if goal is None else (f"≥ {goal:g}× " + ("✓" if ratio >= goal else "✗"))
        setting = "".join(f", {k}={v}" for k, v in a.get("peer_setting", {}).items())
        print(f"| {what} | {a['batch']} | {a['images_per_s']:.1f} | {b['tool']}{setting} | "
              f"{b['images_per_s']:.1f} | {ratio:.2f}× ({q1:.2f}–{q3:.2f}) | {mark} | "
              f"{a['compile_seconds']:.1f} | {load[0]:.1f} |")

    floors = [(what, f) for what, _, _, _, f in rows if f is not None]
    if floors:
        print("\nThe ViT's plain `jax.grad` (jaxattr's compiler options) against the same LXT "
              "calls, in the same rounds: AttnLRP's relevance passes every operation the "
              "gradient passes, so this is about the most it can reach (CP-LRP skips the "
              "attention scores):\n")
        for what, f in floors:
            q1, q3 = f["vs_peer_iqr"]
            print(f"- {what}: jax.grad / LXT = {f['vs_peer']:.2f}× ({q1:.2f}–{q3:.2f})")


if __name__ == "__main__":
    main()
