"""jaxattr side by side with Captum, Zennit and Quantus: throughput on the paper CNN.

The same network (``PaperCNN``: 3×3 SAME convs 32,32 | pool | 64,64 | pool | 128,128 | pool |
dense 512 | dense 10, 32×32×3 inputs, float32) is built in Flax and in PyTorch from one set of
weights (``tests/peers/_torch_nets.py``) and every matching method is timed on both, each pair
*interleaved* (jaxattr, peer, jaxattr, peer, …) after a warm-up, so that a busy shared machine
slows both alike; ``seconds`` is the median of ``--repeats`` calls. jaxattr's compile time (first
call minus the median) is reported apart; for the peers the same number is their warm-up cost.

Pairs: Gradient / Gradient×Input / Guided Backprop / DeconvNet / Integrated Gradients (32
Gauss–Legendre nodes) / DeepLIFT against Captum; the LRP composites against Zennit; region
perturbation (``patch 8``, 16 regions, 16 steps, baseline 0) and pixel flipping against Quantus'
``RegionPerturbation`` and ``PixelFlipping`` (batch ``--aopc-batch``). Quantus' pixel flipping
needs ``features_in_step`` to divide H·W while it flips C·H·W features, so 16 steps are
impossible on 32×32×3: it runs ``features_in_step=128`` (24 steps) against jaxattr's
``region=1, steps=24``.

Prints one JSON object per line (DESIGN §7)::

    {"tool": "jaxattr"|"captum"|"zennit"|"quantus", "what": ..., "batch": N, "seconds": s,
     "images_per_s": r, "compile_seconds": c}

then a Markdown table of the speed-ups jaxattr / peer: the median over the rounds of the
ratio within each round (peer seconds / jaxattr seconds), with its quartiles. Needs the
``[peers]`` extra.

    python benchmarks/peers.py --batch 128 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "peers"))
from _timing import timed  # noqa: E402  (benchmarks/ is the script's directory)

#: issue 8's targets: jaxattr images/s over the peer's, at batch 128 on a 2-core CPU
TARGETS = {
    "gradient": 1.0, "gradient_x_input": 1.0, "guided_backprop": 1.0, "deconvnet": 1.0,
    "integrated_gradients_32": 1.0, "deeplift": 3.0,
    "lrp.epsilon_plus": 2.0, "lrp.epsilon_plus_flat": 2.0, "lrp.epsilon_alpha2_beta1": 2.0,
    "lrp.epsilon_gamma_box": 3.0,
    "region_perturbation_16": 1.0, "pixel_flipping_24": 2.0,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--aopc-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16, help="region-perturbation steps (= regions)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--only", nargs="*", default=None, help="run only these 'what' names")
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

    def jaxattr_fn(method):
        fn = ja.explain(pair.apply_fn, method, precision=args.precision)
        return lambda: jax.block_until_ready(fn(variables, xj, tj))

    def captum_fn(make, **kwargs):
        algo = make(model)

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

    cases = [
        ("gradient", ja.Gradient(), "captum", captum_fn(CA.Saliency, abs=False)),
        ("gradient_x_input", ja.GradientXInput(), "captum", captum_fn(CA.InputXGradient)),
        ("guided_backprop", ja.GuidedBackprop(), "captum", captum_fn(CA.GuidedBackprop)),
        ("deconvnet", ja.DeconvNet(), "captum", captum_fn(CA.Deconvolution)),
        ("integrated_gradients_32", ja.IntegratedGradients(steps=32), "captum",
         captum_fn(CA.IntegratedGradients, method="gausslegendre", n_steps=32,
                   internal_batch_size=8 * args.batch)),  # jaxattr's chunk: 8 nodes at a time
        ("deeplift", ja.DeepLIFT(), "captum", captum_fn(CA.DeepLift)),
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

    def race(what, batch, ours, peer_tool, peer):
        """Warm both, then interleave ``repeats`` timed calls; medians, and the speed-up as the
        median (and quartiles) of the per-round ratio peer time / jaxattr time."""
        t = timed({"ours": ours, "peer": peer}, args.repeats)
        med, first = t.median, t.first
        ratio, q1, q3 = t.ratio("peer", "ours")
        a = emit("jaxattr", what, batch, med["ours"], max(first["ours"] - med["ours"], 0.0),
                 vs_peer=round(ratio, 3), vs_peer_iqr=[round(q1, 3), round(q3, 3)])
        b = emit(peer_tool, what, batch, med["peer"], max(first["peer"] - med["peer"], 0.0))
        rows.append((what, a, b))

    for what, method, tool, make_peer in cases:
        if args.only and what not in args.only:
            continue
        peer = make_peer() if tool == "zennit" else make_peer
        try:
            race(what, args.batch, jaxattr_fn(method), tool, peer)
        finally:
            getattr(peer, "close", lambda: None)()  # remove Zennit's hooks
    for what, ours, tool, make_peer in evals:
        if args.only and what not in args.only:
            continue
        race(what, args.aopc_batch, ours, tool, make_peer())

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n{cpu}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.devices()[0].platform}), "
          f"torch {torch.__version__} ({args.threads} threads); paper CNN float32; medians of "
          f"{args.repeats} interleaved calls\n")
    print("| what | batch | jaxattr img/s | peer | peer img/s | jaxattr / peer (quartiles) | "
          "target | jaxattr compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for what, a, b in rows:
        ratio, (q1, q3) = a["vs_peer"], a["vs_peer_iqr"]
        goal = TARGETS.get(what)
        mark = "" if goal is None else (f"≥ {goal:g}× " + ("✓" if ratio >= goal else "✗"))
        print(f"| {what} | {a['batch']} | {a['images_per_s']:.1f} | {b['tool']} | "
              f"{b['images_per_s']:.1f} | {ratio:.2f}× ({q1:.2f}–{q3:.2f}) | {mark} | "
              f"{a['compile_seconds']:.1f} |")


if __name__ == "__main__":
    main()
