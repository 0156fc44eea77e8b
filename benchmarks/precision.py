"""Error and cost of each precision setting against a float64 CPU reference.

For the paper CNN (random weights, uniform inputs) and each method, the attribution at each
precision of :mod:`jaxattr.precision` on the default device, compared with the same method in
float64 on the CPU: ``max|R − R_float64| / max|R_float64|``, and its time relative to
``"fast"`` (the backend's default). On CPU all settings give float32 arithmetic (errors ~1e-6,
cost ~1); on recent NVIDIA GPUs ``"fast"`` is TF32.

Prints one JSON object per line (DESIGN §7)::

    {"tool": "jaxattr", "what": "precision.<method>", "precision": p, "batch": N,
     "rel_max_error": e, "seconds": s, "cost_vs_fast": c, "device": ...}

    python benchmarks/precision.py --batch 128
"""

from __future__ import annotations

import argparse
import json

import jax

jax.config.update("jax_enable_x64", True)  # the float64 reference; float32 arrays stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxattr as ja  # noqa: E402
from jaxattr.models import PaperCNN  # noqa: E402
from _timing import timed  # noqa: E402  (benchmarks/ is the script's directory)

METHODS = {
    "gradient": ja.Gradient(),
    "lrp.epsilon": ja.LRP(ja.rules.Epsilon(1e-6)),
    "lrp.epsilon_plus_flat": ja.LRP(ja.composites.epsilon_plus_flat()),
    "deeplift": ja.DeepLIFT(),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--precisions", nargs="*", default=list(ja.precision.NAMES))
    args = parser.parse_args(argv)

    model = PaperCNN()
    x = np.random.default_rng(0).uniform(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    params = jax.device_get(model.init(jax.random.key(1), jnp.asarray(x[:1])))
    target = np.asarray(jnp.argmax(model.apply(params, jnp.asarray(x)), -1), np.int32)
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64, t64 = jnp.asarray(x, jnp.float64), jnp.asarray(target)
    device = jax.devices()[0]
    xd, td = jax.device_put(x, device), jax.device_put(target, device)
    paramsd = jax.device_put(params, device)
    for name in args.methods:
        method = METHODS[name]
        with jax.default_device(cpu):
            reference = np.asarray(ja.attribute(model.apply, params64, x64, t64, method=method,
                                                precision="float32"))
        scale = np.abs(reference).max()
        fns = {p: (lambda fn: lambda: jax.block_until_ready(fn(paramsd, xd, td)))(
            ja.explain(model.apply, method, precision=p)) for p in args.precisions}
        t = timed(fns, args.repeats)
        for p in args.precisions:
            got = np.asarray(fns[p](), np.float64)
            print(json.dumps({
                "tool": "jaxattr", "what": f"precision.{name}", "precision": p,
                "batch": args.batch, "rel_max_error": float(np.abs(got - reference).max() / scale),
                "seconds": round(t.median[p], 5),
                "cost_vs_fast": round(t.ratio(p, "fast")[0], 3) if "fast" in fns else None,
                "device": device.device_kind, "platform": device.platform}), flush=True)


if __name__ == "__main__":
    main()
