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

``train_grid_41`` vmaps all 41 configurations (``vmap_size=None``);
``train_grid_41_chunk1`` runs them one after another inside the same program
(``vmap_size=1``, the CPU default, see ``train_grid``).

Usage: python benchmarks/training.py [--model paper|small] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import time

import jax

from jaxattr.data import load_digits
from jaxattr.models import PaperCNN, small_paper_cnn
from jaxattr.training import init_params, paper_configs, train, train_grid
from jaxattr.training.cv import split_fold, stratified_folds


def timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["paper", "small"], default="paper")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    x, y = load_digits()
    fold = stratified_folds(y, 10, seed=0)[0]
    x_tr, y_tr, x_val, y_val, _, _ = split_fold(x, y, fold)
    model = PaperCNN() if args.model == "paper" else small_paper_cnn()
    params = init_params(model, x_tr[:1], seed=0)
    configs = paper_configs()
    # patience > epochs: every configuration trains every epoch (no early stop)
    common = dict(
        batch_size=args.batch, patience=args.epochs + 1, params=params, progress=False
    )
    n = len(x_tr)
    base = {"tool": "jaxattr", "batch": args.batch, "model": args.model,
            "dataset": "digits", "train_examples": n, "epochs": args.epochs,
            "device": jax.devices()[0].device_kind, "devices": jax.device_count()}

    def one(epochs):
        return train(model, x_tr, y_tr, x_val, y_val, decay=1e-3, group="A",
                     epochs=epochs, **common)[0]

    def grid(vmap_size):
        return lambda epochs: train_grid(
            model, configs, x_tr, y_tr, x_val, y_val, epochs=epochs,
            vmap_size=vmap_size, **common)[0]

    k = len(configs)
    runs = [("train_one", one, 1, None),
            (f"train_grid_{k}", grid(None), k, "all"),
            (f"train_grid_{k}_chunk1", grid(1), k, 1)]
    results = {}
    for what, run, k, vmap_size in runs:
        compile_s, _ = timed(lambda: run(1))
        seconds, _ = timed(lambda: run(args.epochs))
        results[what] = seconds
        record = {**base, "what": what, "configs": k, "seconds": round(seconds, 3),
                  "examples_per_s": round(k * n * args.epochs / seconds, 1),
                  "first_call_seconds": round(compile_s, 3)}
        if k > 1:
            record["vmap_size"] = vmap_size
            sequential = k * results["train_one"]
            record["equivalent_sequential_seconds"] = round(sequential, 3)
            record["speedup_vs_sequential"] = round(sequential / seconds, 2)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
