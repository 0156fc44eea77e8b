"""The DeepLIFT paper's experiments (Shrikumar et al. 2016): Fig. 1 toy, genomics simulation
(§3.2, Fig. 3) and a Fig. 2-style comparison grid on scikit-learn's digits.

Run::

    python experiments/deeplift_genomics.py --small          # ~1 min on 2 CPU cores
    python experiments/deeplift_genomics.py                  # full settings (see FULL)
    python experiments/deeplift_genomics.py --out results/deeplift

It prints one JSON object per result line and writes ``genomics.json``, ``fig2_digits.png`` and
``fig3_genomics.png`` under ``--out``. The functions are importable (the notebook
``notebooks/deeplift_paper.ipynb`` and the tests use them).

Genomics protocol (paper §3.2, details the paper leaves open chosen here):

* data: :func:`jaxattr.data.genomics.simulate` (binary task: both motifs present), split into
  train / validation / test sets from different seeds;
* model: :class:`jaxattr.models.genomics_cnn.GenomicsCNN` (SAME pooling: 4 windows, every
  position seen; ``--pool-padding VALID`` gives Keras' 3 windows, blind to positions ≥ 164);
* training: Adam (lr 2e-3; 3e-3 small), sigmoid cross-entropy on the logit, batch 128, early
  stopping on the validation loss (patience 5), best weights restored. The model needs
  ≳ 10 000 training sequences to find the motifs at all: with fewer it memorises the training
  set and stays at auROC 0.5;
* test auROC of the logit (paper: 0.907);
* motif recovery: on correctly predicted positive test sequences, per-position scores (the
  attribution summed over the four channels) rank positions; per motif kind, the auROC of
  "position inside an inserted instance of that kind" against "position in no inserted
  instance". Methods: |gradient| (summed over the channels), gradient × input (the gradient of
  the base present), DeepLIFT-Rescale with the zero
  reference on the raw weights, with the zero reference after eq. 22 normalisation of the first
  conv (the paper's setting) and with the background-frequency reference (2017 paper);
  DeepLIFT-RevealCancel (2017 paper, eq. 22 + zero reference);
  integrated gradients (eq. 22, zero baseline) for comparison. With one-hot inputs, eq. 22 + zero
  reference gives the same per-position scores as the uniform reference on raw weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.metrics import roc_auc_score

import jaxattr as ja
from jaxattr.data.genomics import MOTIF_NAMES, UNIFORM_BACKGROUND, GenomicsData, simulate
from jaxattr.models.genomics_cnn import GenomicsCNN
from jaxattr.weight_norm import normalize_one_hot_weights


@dataclasses.dataclass(frozen=True)
class Settings:
    n_train: int = 30000
    n_val: int = 2000
    n_test: int = 4000
    epochs: int = 40
    patience: int = 5
    batch_size: int = 128
    learning_rate: float = 2e-3
    pool_padding: str = "SAME"
    background: tuple = UNIFORM_BACKGROUND
    seed: int = 0
    digits_epochs: int = 60
    digits_images: int = 6


FULL = Settings()
SMALL = Settings(n_train=12000, n_val=1000, n_test=1000, epochs=8, patience=3, learning_rate=3e-3,
                 digits_epochs=15, digits_images=4)


# ------------------------------------------------------------------------------------------
# Fig. 1 toy
# ------------------------------------------------------------------------------------------

def fig1_apply(params, x):
    """Fig. 1: ``h = ReLU(x1 + 2·x2 + 2)``, ``y = 0.1 + 0.2·h`` as logits of shape (batch, 1)."""
    h = jax.nn.relu(x @ params["w"] + params["b"])
    return params["v"] * h + params["c"]


FIG1_PARAMS = {"w": jnp.array([[1.0], [2.0]]), "b": jnp.array([2.0]), "v": jnp.array([[0.2]]),
               "c": jnp.array([0.1])}


def fig1_toy() -> dict:
    """Gradient and DeepLIFT on the paper's Fig. 1 network at x1 = x2 = −1, reference 0."""
    x = jnp.array([[-1.0, -1.0]])
    grad = ja.attribute(fig1_apply, FIG1_PARAMS, x, method=ja.Gradient())
    dl = ja.attribute(fig1_apply, FIG1_PARAMS, x, method=ja.DeepLIFT(0.0))
    y, y0 = fig1_apply(FIG1_PARAMS, x)[0, 0], fig1_apply(FIG1_PARAMS, jnp.zeros_like(x))[0, 0]
    return {"output": float(y), "reference_output": float(y0), "gradient": np.asarray(grad[0]).tolist(),
            "deeplift": np.asarray(dl[0]).tolist(), "deeplift_sum": float(dl.sum())}


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------

def sigmoid_loss(logits, y):
    return optax.sigmoid_binary_cross_entropy(logits[:, 0], y.astype(logits.dtype)).mean()


def softmax_loss(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def fit(apply_fn: Callable, params: Any, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
        y_val: np.ndarray, loss_fn: Callable, *, epochs: int, patience: int, batch_size: int,
        learning_rate: float, seed: int):
    """Adam with early stopping on the validation loss (best weights restored).

    Returns ``(params, history)`` with per-epoch ``train_loss`` and ``val_loss`` lists."""
    opt = optax.adam(learning_rate)
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(apply_fn(p, xb), yb))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    val_loss = jax.jit(lambda p: loss_fn(apply_fn(p, x_val), y_val))
    rng = np.random.default_rng(seed)
    best, best_loss, waited = params, np.inf, 0
    history = {"train_loss": [], "val_loss": []}
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        losses = []
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            params, state, loss = step(params, state, x[idx], y[idx])
            losses.append(float(loss))
        v = float(val_loss(params))
        history["train_loss"].append(float(np.mean(losses)))
        history["val_loss"].append(v)
        if v < best_loss:
            best, best_loss, waited = params, v, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best, history


def genomics_data(s: Settings) -> tuple[GenomicsData, GenomicsData, GenomicsData]:
    """Train, validation and test sets (seeds ``s.seed``, ``+1``, ``+2``)."""
    make = lambda n, k: simulate(n, seed=s.seed * 10 + k, background=s.background)
    return make(s.n_train, 0), make(s.n_val, 1), make(s.n_test, 2)


def train_genomics(s: Settings):
    """Train the paper's CNN; returns ``(model, params, (train, val, test), history, seconds)``."""
    train, val, test = genomics_data(s)
    model = GenomicsCNN(pool_padding=s.pool_padding)
    params = jax.jit(model.init)(jax.random.key(s.seed), jnp.zeros((1,) + train.x.shape[1:]))
    t0 = time.perf_counter()
    params, history = fit(model.apply, params, train.x, train.labels, val.x, val.labels, sigmoid_loss,
                          epochs=s.epochs, patience=s.patience, batch_size=s.batch_size,
                          learning_rate=s.learning_rate, seed=s.seed)
    return model, params, (train, val, test), history, time.perf_counter() - t0


def predict(apply_fn, params, x, chunk: int = 1024) -> np.ndarray:
    f = jax.jit(apply_fn)
    return np.concatenate([np.asarray(f(params, x[i:i + chunk])) for i in range(0, len(x), chunk)])


# ------------------------------------------------------------------------------------------
# motif recovery
# ------------------------------------------------------------------------------------------

def genomics_methods(params, background=UNIFORM_BACKGROUND) -> dict:
    """``name -> (method, params, post)``: the attributions compared on the genomics task.

    ``post`` maps the attribution (n, length, 4) to per-position scores (n, length)."""
    normed = normalize_one_hot_weights(params, "conv")
    channel_sum = lambda r: r.sum(-1)
    return {
        "|gradient|": (ja.Gradient(), params, lambda r: np.abs(r).sum(-1)),
        "gradient_x_input": (ja.GradientXInput(), params, channel_sum),
        "deeplift_zero_raw": (ja.DeepLIFT(0.0), params, channel_sum),
        "deeplift_zero_eq22": (ja.DeepLIFT(0.0), normed, channel_sum),
        "deeplift_background": (ja.DeepLIFT(np.asarray(background, np.float32)), params, channel_sum),
        "deeplift_reveal_cancel_eq22": (ja.DeepLIFT(0.0, rule="reveal_cancel"), normed, channel_sum),
        "integrated_gradients_eq22": (ja.IntegratedGradients(steps=32), normed, channel_sum),
    }


def attribute_chunked(apply_fn, params, x, method, target, chunk: int = 256) -> np.ndarray:
    fn = ja.explain(apply_fn, method)
    out = [np.asarray(fn(params, jnp.asarray(x[i:i + chunk]), jnp.asarray(target[i:i + chunk])))
           for i in range(0, len(x), chunk)]
    return np.concatenate(out)


def motif_auroc(scores: np.ndarray, motif_mask: np.ndarray) -> dict:
    """Per motif kind: auROC of per-position ``scores`` (n, length), positions inside that kind's
    instances against positions in no instance, pooled over sequences."""
    background = ~motif_mask.any(-1)
    out = {}
    for k, name in enumerate(MOTIF_NAMES):
        pos, neg = scores[motif_mask[..., k]], scores[background]
        if len(pos) == 0:
            out[name] = float("nan")
            continue
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        out[name] = float(roc_auc_score(y, np.concatenate([pos, neg])))
    return out


def motif_recovery(model, params, test: GenomicsData, background=UNIFORM_BACKGROUND,
                   methods: Optional[dict] = None) -> dict:
    """Motif recovery of every method on correctly predicted positive test sequences (the
    paper scores "the correctly predicted sequences" of the positive class)."""
    logits = predict(model.apply, params, test.x)[:, 0]
    keep = (test.labels == 1) & (logits > 0)
    x, mask = test.x[keep], test.motif_mask[keep]
    target = np.zeros(len(x), np.int32)
    methods = genomics_methods(params, background) if methods is None else methods
    results = {"n_sequences": int(keep.sum())}
    for name, (method, p, post) in methods.items():
        t0 = time.perf_counter()
        r = attribute_chunked(model.apply, p, x, method, target)
        results[name] = motif_auroc(post(r), mask)
        results[name]["seconds"] = round(time.perf_counter() - t0, 2)
    return results


class GenomicsRun(NamedTuple):
    summary: dict  # JSON-able: settings, auROC, motif recovery, run times
    model: GenomicsCNN
    params: Any
    test: GenomicsData


def run_genomics(s: Settings, methods: Optional[dict] = None) -> GenomicsRun:
    """Train, evaluate auROC, score motif recovery (all :func:`genomics_methods` by default)."""
    model, params, (_, _, test), history, train_s = train_genomics(s)
    logits = predict(model.apply, params, test.x)[:, 0]
    out = {"settings": dataclasses.asdict(s), "epochs_run": len(history["val_loss"]),
           "best_val_loss": float(min(history["val_loss"])), "train_seconds": round(train_s, 1),
           "test_auroc": float(roc_auc_score(test.labels, logits)), "paper_auroc": 0.907}
    t0 = time.perf_counter()
    out["motif_recovery"] = motif_recovery(model, params, test, s.background, methods)
    out["attribution_seconds"] = round(time.perf_counter() - t0, 1)
    return GenomicsRun(out, model, params, test)


def fig3_tracks(model, params, test: GenomicsData, path, index: Optional[int] = None):
    """Fig. 3-style plot: DeepLIFT (eq. 22, zero reference) and gradient × input per position of
    one correctly predicted positive sequence, motif instances shaded. Returns the index used."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logits = predict(model.apply, params, test.x)[:, 0]
    candidates = np.flatnonzero((test.labels == 1) & (logits > 0))
    i = int(candidates[np.argmax(logits[candidates])]) if index is None else index
    x, target = test.x[i:i + 1], np.zeros(1, np.int32)
    normed = normalize_one_hot_weights(params, "conv")
    rows = [("DeepLIFT (eq. 22, zero reference)",
             attribute_chunked(model.apply, normed, x, ja.DeepLIFT(0.0), target)),
            ("gradient × input", attribute_chunked(model.apply, params, x, ja.GradientXInput(), target))]
    fig, axes = plt.subplots(2, 1, figsize=(12, 4.5), sharex=True)
    colors = ("tab:green", "tab:blue", "tab:orange", "tab:red")
    for ax, (title, r) in zip(axes, rows):
        for c, base in enumerate("ACGT"):
            ax.bar(np.arange(x.shape[1]), r[0, :, c], color=colors[c], width=1.0, label=base)
        for k, color in enumerate(("tab:purple", "tab:gray")):
            pos = np.flatnonzero(test.motif_mask[i, :, k])
            if len(pos):
                for run in np.split(pos, np.flatnonzero(np.diff(pos) > 1) + 1):
                    ax.axvspan(run[0] - 0.5, run[-1] + 0.5, color=color, alpha=0.2,
                               label=MOTIF_NAMES[k])
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="black", lw=0.5)
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys(), ncol=6, fontsize=8, loc="upper right")
    axes[1].set_xlabel("position")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return i


# ------------------------------------------------------------------------------------------
# Fig. 2-style grid on digits
# ------------------------------------------------------------------------------------------

def lecun_init(model, x, seed: int = 0):
    """Flax's default initialisation (LeCun normal kernels, zero biases) drawn with numpy:
    XLA takes ~15 s to compile ``small_paper_cnn().init`` on this machine, numpy takes none."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = str(path[-1])
        if "kernel" in name:
            return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])), s.dtype)
        return jnp.zeros(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, jax.eval_shape(model.init, jax.random.key(0), x))


def train_digits(epochs: int, seed: int = 0):
    """A small paper CNN on scikit-learn's digits (1500 train / 297 test); returns
    ``(model, params, x_test, y_test, test accuracy, seconds)``."""
    from jaxattr.data.digits import load_digits
    from jaxattr.models.paper_cnn import small_paper_cnn

    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    xtr, ytr, xte, yte = x[:1500], y[:1500], x[1500:], y[1500:]
    model = small_paper_cnn()
    params = lecun_init(model, jnp.zeros((1, 8, 8, 1)), seed)
    t0 = time.perf_counter()
    params, _ = fit(model.apply, params, xtr[:1300], ytr[:1300], xtr[1300:], ytr[1300:], softmax_loss,
                    epochs=epochs, patience=5, batch_size=64, learning_rate=3e-3, seed=seed)
    acc = float((predict(model.apply, params, xte).argmax(-1) == yte).mean())
    return model, params, xte, yte, acc, time.perf_counter() - t0


def fig2_grid(path, epochs: int = 60, n_images: int = 6, seed: int = 0) -> dict:
    """Fig. 2 of the paper on digits: image, |gradient|, positive gradient × input, positive
    DeepLIFT (zero reference); channels summed (one here). Saves a PNG; returns a summary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, params, xte, yte, acc, seconds = train_digits(epochs, seed)
    x = jnp.asarray(xte[:n_images])
    target = jnp.asarray(yte[:n_images])
    maps = {
        "|gradient|": np.abs(np.asarray(ja.attribute(model.apply, params, x, target, ja.Gradient()))),
        "gradient × input (+)": np.maximum(np.asarray(ja.attribute(model.apply, params, x, target,
                                                                   ja.GradientXInput())), 0),
        "DeepLIFT (+)": np.maximum(np.asarray(ja.attribute(model.apply, params, x, target,
                                                           ja.DeepLIFT(0.0))), 0),
    }
    fig, axes = plt.subplots(n_images, 4, figsize=(6.4, 1.6 * n_images))
    axes = np.atleast_2d(axes)
    for r in range(n_images):
        axes[r, 0].imshow(xte[r, :, :, 0], cmap="gray")
        axes[r, 0].set_ylabel(f"label {int(yte[r])}", fontsize=8)
        for c, (name, m) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(m[r].sum(-1), cmap="hot")
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
        axes[0, 0].set_title("image", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"digits_test_accuracy": acc, "digits_train_seconds": round(seconds, 1),
            "figure": str(path), "lrp0_vs_gradient_x_input": lrp0_vs_gradient_x_input(model, params, xte, yte),
            "deletion_aopc": deletion_aopc(model, params, xte, yte, seed)}


def lrp0_vs_gradient_x_input(model, params, x, target) -> dict:
    """DeepLIFT paper §3.4: on a ReLU net (max pool, biases included) LRP-0 equals gradient × input.
    Both on the trained digits CNN over all test images; the largest difference, absolute and
    relative to the largest |gradient × input|."""
    x, target = jnp.asarray(x), jnp.asarray(target)
    lrp0 = np.asarray(ja.attribute(model.apply, params, x, target, ja.LRP(ja.rules.Epsilon(0.0))))
    gxi = np.asarray(ja.attribute(model.apply, params, x, target, ja.GradientXInput()))
    diff = float(np.abs(lrp0 - gxi).max())
    return {"n_images": int(len(x)), "max_abs_diff": diff, "max_abs_gradient_x_input": float(np.abs(gxi).max()),
            "relative": diff / float(np.abs(gxi).max())}


def deletion_aopc(model, params, x, target, seed: int = 0, steps: int = 16) -> dict:
    """A number for Fig. 2's qualitative comparison: AOPC (Samek et al. 2017) of the maps of
    Fig. 2 on the digits test images; single pixels in MoRF order, ``steps`` steps of 1/steps of
    the pixels each, replaced by U(0, 1) noise; score = the target's softmax probability. The
    signed maps are ranked as computed (their positive part ranks the same pixels first)."""
    x, target = jnp.asarray(x), jnp.asarray(target)
    maps = {"|gradient|": jnp.abs(ja.attribute(model.apply, params, x, target, ja.Gradient())),
            "gradient_x_input": ja.attribute(model.apply, params, x, target, ja.GradientXInput()),
            "deeplift": ja.attribute(model.apply, params, x, target, ja.DeepLIFT(0.0)),
            "random": jnp.zeros_like(x)}
    out = {"steps": steps, "region": 1, "perturbation": "uniform", "n_images": int(len(x))}
    for name, relevance in maps.items():
        curve = ja.evaluation.perturbation_curve(
            model.apply, params, x, target, relevance, region=1, steps=steps,
            order="random" if name == "random" else "morf", perturbation="uniform",
            key=jax.random.key(seed), progress=False)
        out[name] = float(np.mean(np.asarray(ja.evaluation.aopc(curve))))
    return out


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small settings (tests, notebook)")
    parser.add_argument("--out", default="results/deeplift_paper")
    parser.add_argument("--pool-padding", choices=("VALID", "SAME"), default="SAME")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args(argv)
    s = dataclasses.replace(SMALL if args.small else FULL, pool_padding=args.pool_padding, seed=args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    fig1 = fig1_toy()
    print(json.dumps({"fig1": fig1}), flush=True)
    run = run_genomics(s)
    g = run.summary
    g["fig1"] = fig1
    g["fig3_sequence"] = fig3_tracks(run.model, run.params, run.test, out / "fig3_genomics.png")
    print(json.dumps({"genomics": g}), flush=True)
    if not args.skip_digits:
        g["fig2"] = fig2_grid(out / "fig2_digits.png", s.digits_epochs, s.digits_images, s.seed)
        print(json.dumps({"fig2": g["fig2"]}), flush=True)
    g["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "genomics.json").write_text(json.dumps(g, indent=2))
    print(json.dumps({"total_seconds": g["total_seconds"]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
