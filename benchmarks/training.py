"""Training throughput: one configuration vs a vmapped grid of the paper's 41.

Prints one JSON object per line (DESIGN.md §7):

    {"tool": "jaxattr", "what": "train_one" | "train_grid_41", "batch": 64,
     "seconds": s, "examples_per_s": r, ...}

``examples_per_s`` counts training examples processed per second summed over
configurations (a grid of 41 configurations doing one epoch of n examples processes
41·n). ``seconds`` is steady-state time for ``--epochs`` epochs (validation
included), after a warm-up call of one epoch that compiles
(``first_call_seconds``). ``equivalent_sequential_seconds`` is what 41 separate
single-configuration runs would take at the measured single rate (their 41
compilations not counted).

``conv`` is the convolution of the model: XLA's (``xla``) or
:func:`jaxattr.models.patches_conv` (``patches``, an im2col matrix product that
vmaps into a batched matrix product instead of a grouped convolution).

``--dataset cifar-shaped`` trains on random data of CIFAR-10's shape (32×32×3, 10
classes, 1024 training and 128 validation examples; nothing to download). ``xla_options``
records the compiler options of the train step (:func:`jaxattr.xla.backward_options`); run
with ``JAXATTR_XLA_DEFAULTS=1`` to time XLA's defaults in comparison.

Usage: python benchmarks/training.py [--model paper|small] [--epochs 2]
       [--conv xla|patches|both] [--dataset digits|cifar-shaped] [--no-grid]
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from jaxattr.data import load_digits
from jaxattr.models import PaperCNN, patches_conv, small_paper_cnn
from jaxattr.training import init_params, paper_configs, train, train_grid
from jaxattr.training.cv import split_fold, stratified_folds
from jaxattr.xla import backward_options


def timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["paper", "small"], default="paper")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--conv", choices=["xla", "patches", "both"], default="both")
    parser.add_argument("--dataset", choices=["digits", "cifar-shaped"], default="digits")
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the vmapped 41-configuration grid")
    parser.add_argument("--precision", default=None, choices=("float32", "fast", "bfloat16"),
                        help="training precision (jaxattr.precision; default float32)")
    args = parser.parse_args(argv)
    convs = ["xla", "patches"] if args.conv == "both" else [args.conv]
    for conv in convs:
        run_all(args, conv)


def run_all(args: argparse.Namespace, conv: str) -> None:
    """Benchmark one configuration, then the 41-configuration grid."""
    if args.dataset == "digits":
        x, y = load_digits()
        fold = stratified_folds(y, 10, seed=0)[0]
        x_tr, y_tr, x_val, y_val, _, _ = split_fold(x, y, fold)
    else:
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(1152, 32, 32, 3)).astype(np.float32)
        y = (np.arange(1152) % 10).astype(np.int32)
        x_tr, y_tr, x_val, y_val = x[:1024], y[:1024], x[1024:], y[1024:]
    conv_fn = patches_conv if conv == "patches" else None
    model = (PaperCNN if args.model == "paper" else small_paper_cnn)(
        conv_general_dilated=conv_fn
    )
    params = init_params(model, x_tr[:1], seed=0)
    configs = paper_configs()
    # patience > epochs: every configuration trains every epoch (no early stop)
    common = dict(
        batch_size=args.batch, patience=args.epochs + 1, params=params, progress=False,
        precision=args.precision,
    )
    n = len(x_tr)
    base = {"tool": "jaxattr", "batch": args.batch, "model": args.model, "conv": conv,
            "dataset": args.dataset, "train_examples": n, "epochs": args.epochs,
            "precision": args.precision or "float32",
            "xla_options": backward_options(),
            "device": jax.devices()[0].device_kind, "devices": jax.device_count()}

    def one(epochs):
        return train(model, x_tr, y_tr, x_val, y_val, decay=1e-3, group="A",
                     epochs=epochs, **common)[0]

    def grid(epochs):
        return train_grid(model, configs, x_tr, y_tr, x_val, y_val, epochs=epochs,
                          strategy="vmap", **common)[0]

    results = {}
    runs = [("train_one", one, 1)]
    if args.grid:
        runs.append((f"train_grid_{len(configs)}", grid, len(configs)))
    for what, run, k in runs:
        compile_s, _ = timed(lambda: run(1))
        seconds, _ = timed(lambda: run(args.epochs))
        results[what] = seconds
        record = {**base, "what": what, "configs": k, "seconds": round(seconds, 3),
                  "examples_per_s": round(k * n * args.epochs / seconds, 1),
                  "first_call_seconds": round(compile_s, 3)}
        if k > 1:
            sequential = k * results["train_one"]
            record["equivalent_sequential_seconds"] = round(sequential, 3)
            record["speedup_vs_sequential"] = round(sequential / seconds, 2)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
