"""The resumable grid study of Amorim et al. 2020, "Interpretability vs. Complexity: the friction
in deep neural networks" (IJCNN): train the CNN under L2 decays on layer groups, explain the
held-out fold with the paper's methods, score the explanations by region perturbation (AOPC,
confidence drops) against a random-order baseline, and write tables and figures.

Units of work are ``(dataset, fold, decay, group)``; decay 0 is one model per fold (group
``"none"``). Per fold, every configuration is trained at once as one vmapped program
(:func:`jaxattr.training.loop.train_grid`; one model after another on CPU) and each unit's
parameters are checkpointed with orbax; then each unit is evaluated and its rows written
atomically (:mod:`jaxattr.study.store`). A rerun skips finished units; a kill loses at most the
model being trained (on CPU; the fold grid on accelerators) or the unit being evaluated, and the
rerun reproduces the same numbers: a model trains alone exactly as in its grid, a vmapped grid
always has the same configurations, and every key derives from the seed.

The same holds across processes (:mod:`jaxattr.study.distributed`): started once per GPU or
host, the processes split the pending units (whole folds when grids are vmapped), each writes
only its units' files, and the folder ends exactly as one process leaves it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import composites, rules
from .. import precision as _precision
from .. import methods as M
from ..api import explain
from ..data import load_dataset
from ..evaluation import evaluate
from ..models.conv import patches_conv
from ..models.paper_cnn import PaperCNN
from ..training.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from ..training.configs import PAPER_DECAYS, Config
from ..training.cv import split_fold, stratified_folds
from ..training.groups import GROUPS
from ..training.loop import grid_strategy, train_grid
from .distributed import SINGLE, Processes, share, wait_for_units
from .report import write_report
from .store import BASELINE_GROUP, DROP_FRACTIONS, RANDOM_METHOD, ResultsStore, StudyConfig, StudyStoreError, Unit

#: Methods by the names the study and the CLI use. The paper's five come first; its "LRP" is
#: iNNvestigate 1.0.8's ``lrp.epsilon`` (ε = 1e-7, bias kept, on every layer), the analyzer of
#: that name the paper's toolbox offers, and Deep Taylor is iNNvestigate 1.0.8's ``deep_taylor``.
METHODS: dict = {
    "gradient": M.Gradient(),
    "deconvnet": M.DeconvNet(),
    "guided_backprop": M.GuidedBackprop(),
    "deep_taylor": M.DeepTaylor(),
    "lrp": M.LRP(rules.Epsilon(1e-7)),
    "gradient_x_input": M.GradientXInput(),
    "integrated_gradients": M.IntegratedGradients(steps=32),
    "smoothgrad": M.SmoothGrad(samples=32, sigma=0.1),
    "deeplift": M.DeepLIFT(),
    "lrp.z": M.LRP(rules.Epsilon(0.0)),
    "lrp.epsilon_plus": M.LRP(composites.epsilon_plus()),
    "lrp.epsilon_plus_flat": M.LRP(composites.epsilon_plus_flat()),
    "lrp.epsilon_gamma_box": M.LRP(composites.epsilon_gamma_box(0.0, 1.0)),
    "lrp.epsilon_alpha2_beta1": M.LRP(composites.epsilon_alpha2_beta1()),
}
PAPER_METHODS = ("gradient", "deconvnet", "guided_backprop", "deep_taylor", "lrp")
DATASETS = ("digits", "cifar10")
WIDTHS = {"paper": dict(features=(32, 64, 128), dense=512), "small": dict(features=(8, 16, 32), dense=64)}

#: Largest image side the study runs with the im2col convolution on CPU (see _fast_model).
PATCHES_MAX_SIDE = 16

#: Model evaluations per compiled perturbation block: bounds memory on large test folds.
EVAL_CHUNK = 2048

#: Seconds the processes of a multi-process study wait for each other at a barrier (opening the
#: folder, planning, the report): short steps; the long wait for the units has no timeout.
BARRIER_TIMEOUT = 1800

#: The defaults of ``jaxattr study``: the paper's protocol (10 folds, 41 models per fold).
DEFAULTS = dict(dataset="digits", folds=10, decays=PAPER_DECAYS, groups=GROUPS, methods=PAPER_METHODS,
                epochs=100, patience=10, batch_size=64, learning_rate=1e-3, width="paper",
                val_fraction=0.1, eval_size=None, region=1, steps=10, perturbation="uniform",
                score="probability", seed=0, precision="float32")
#: ``--quick``: a few minutes on a 2-core CPU.
QUICK = dict(folds=2, decays=(0.0, 1e-2), groups=("D", "A"), methods=("gradient", "lrp"), epochs=12,
             patience=4, width="small", eval_size=64)


def study_config(**options: Any) -> StudyConfig:
    """A :class:`StudyConfig` from keyword options (missing ones from :data:`DEFAULTS`).

    Raises ``ValueError`` naming the option for an unknown dataset, method, group or width.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown study options {unknown}; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None or k == "eval_size"}}
    if o["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {o['dataset']!r}: choose from {list(DATASETS)}")
    if isinstance(o["methods"], str) or not o["methods"]:
        raise ValueError(f"methods must name one or more methods (the random baseline is always added), got "
                         f"{o['methods']!r}: choose from {list(METHODS)}")
    bad = [m for m in o["methods"] if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}: choose from {list(METHODS)}")
    bad = [g for g in o["groups"] if g not in GROUPS]
    if bad:
        raise ValueError(f"unknown groups {bad}: choose from {list(GROUPS)}")
    if o["width"] not in WIDTHS:
        raise ValueError(f"unknown width {o['width']!r}: choose from {list(WIDTHS)}")
    if o["folds"] < 2:
        raise ValueError(f"folds must be >= 2 (cross-validation), got {o['folds']}")
    eval_size = o["eval_size"]
    if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, (int, np.integer))
                                  or eval_size < 1):
        raise ValueError(f"eval_size must be None (all test images) or an integer >= 1, got {eval_size!r}")
    training = {k: o[k] for k in ("epochs", "patience", "batch_size", "learning_rate", "width",
                                  "val_fraction")}
    # recorded only when not the default, so studies written before the option resume as they are
    if _precision.check(o["precision"], "precision") not in (None, "float32"):
        training["precision"] = o["precision"]
    perturbation = {k: o[k] for k in ("eval_size", "region", "steps", "perturbation", "score")}
    perturbation["fractions"] = list(DROP_FRACTIONS)
    return StudyConfig(dataset=o["dataset"], folds=int(o["folds"]), decays=tuple(o["decays"]),
                       groups=tuple(o["groups"]), methods=tuple(o["methods"]), training=training,
                       perturbation=perturbation, seed=int(o["seed"]))


@dataclasses.dataclass
class StudyResult:
    """Where a study's results are, and what this run did."""

    out: Path
    results_csv: Path
    report: Path
    units_evaluated: int
    units_skipped: int
    models_trained: int
    seconds: float

    def summary(self) -> str:
        return (f"study done in {self.seconds:.0f} s: {self.units_evaluated} units evaluated, "
                f"{self.units_skipped} already done, {self.models_trained} models trained; results in "
                f"{self.results_csv}, report in {self.report}")


def _model(config: StudyConfig, n_classes: int) -> PaperCNN:
    return PaperCNN(num_classes=n_classes, **WIDTHS[config.training["width"]])


def _fast_model(model: PaperCNN, image_shape: Sequence[int]) -> PaperCNN:
    """The model the study trains and scores perturbed images with: on XLA's CPU backend small
    images (digits' 8×8) run about 4× faster through the im2col convolution
    (:func:`jaxattr.models.patches_conv`; a batch-64 training step of the paper CNN: 10 ms
    against 45 ms; a forward pass of 1980 images: 189 ms against 530 ms). Same parameters, same
    function: explanations are computed on ``model`` itself."""
    if jax.default_backend() == "cpu" and max(image_shape[:2]) <= PATCHES_MAX_SIDE:
        return model.clone(conv_general_dilated=patches_conv)
    return model


def _study_precision(config: StudyConfig) -> str:
    """The study's precision (:mod:`jaxattr.precision`) for training, explanations and the
    perturbation forwards."""
    return config.training.get("precision", "float32")


def _grid_config(unit: Unit) -> Config:
    return Config(unit.decay, "A" if unit.group == BASELINE_GROUP else unit.group)


def _unit_key(config: StudyConfig, unit: Unit) -> jax.Array:
    """A key per unit, from the seed and the unit's place in the study (same seed → same key)."""
    return jax.random.fold_in(jax.random.key(config.seed), config.units().index(unit))


def _training_batches(store: ResultsStore, units: Sequence[Unit]) -> list[list[Unit]]:
    """The trainings a fold's ``units`` still need, each a list of units trained together.

    Sequentially (CPU) each unit lacking a checkpoint is trained alone, so a kill loses at most
    the model in training. As one vmapped program (accelerators) the whole fold grid is trained
    whenever a unit lacks a checkpoint, so that every unit always comes from the same grid (the
    same numbers after a resume)."""
    missing = [u for u in units if not checkpoint_exists(store.checkpoint_dir(u))]
    if grid_strategy() == "sequential":
        return [[u] for u in missing]
    return [list(units)] if missing else []


def _fold_units(config: StudyConfig, fold: int) -> list[Unit]:
    return [u for u in config.units() if u.fold == fold]


def _models_to_train(store: ResultsStore, folds: Sequence[int]) -> int:
    """How many models the given folds will train."""
    return sum(len(batch) for fold in folds
               for batch in _training_batches(store, _fold_units(store.config, fold)))


def _train_fold(store: ResultsStore, model, units: Sequence[Unit], data, fold: int,
                progress: bool, models_bar=None) -> int:
    """Train what the fold's ``units`` still need (:func:`_training_batches`) and checkpoint
    every unit that lacked one. Returns how many units were checkpointed."""
    t = store.config.training
    x_train, y_train, x_val, y_val = data
    saved = 0
    for batch in _training_batches(store, units):
        stacked, history = train_grid(
            model, [_grid_config(u) for u in batch], x_train, y_train, x_val, y_val,
            epochs=t["epochs"], batch_size=t["batch_size"], learning_rate=t["learning_rate"],
            patience=t["patience"], seed=store.config.seed * 1000 + fold, strategy=grid_strategy(),
            progress=progress, precision=_study_precision(store.config))
        for i, unit in enumerate(batch):
            if not checkpoint_exists(store.checkpoint_dir(unit)):
                pick = lambda a: np.asarray(a)[i]
                # overwrite: a directory without a complete checkpoint is left by a kill
                save_checkpoint(store.checkpoint_dir(unit), jax.tree_util.tree_map(pick, stacked),
                                type(history)(*map(pick, history)), overwrite=True)
                saved += 1
        if models_bar is not None:
            models_bar.update(len(batch))
    return saved


def _in_batches(fn, size: int = 256):
    """``fn(params, x, target)`` over ``x`` in batches of ``size`` (bounded memory on big folds)."""

    def batched(params, x, target):
        parts = [fn(params, x[i:i + size], None if target is None else target[i:i + size])
                 for i in range(0, x.shape[0], size)]
        return jnp.concatenate(parts) if len(parts) > 1 else parts[0]

    return batched


def _evaluate_unit(store: ResultsStore, model, unit: Unit, methods: Sequence[str], x_test, y_test,
                   progress: bool, fast_model=None) -> None:
    """Explain ``unit``'s test images with ``model`` and score them, running the forward passes
    of the perturbation curves on ``fast_model`` (the same function, see :func:`_fast_model`)."""
    params, _ = load_checkpoint(store.checkpoint_dir(unit))
    variables = {"params": jax.tree_util.tree_map(jnp.asarray, params)}
    apply_fn = model.apply
    forward = (fast_model or model).apply
    p = store.config.perturbation
    x = jnp.asarray(x_test)
    precision = _study_precision(store.config)
    with _precision.context(precision):
        logits = jax.jit(forward)(variables, x)
    accuracy = float((jnp.argmax(logits, -1) == jnp.asarray(y_test)).mean())
    target = jnp.asarray(y_test, jnp.int32)  # explain the true class, as the paper's confidence
    explanations = {m: _in_batches(explain(apply_fn, METHODS[m], precision))
                    for m in methods if m != RANDOM_METHOD}
    table, curves = evaluate(
        forward, variables, x, target, explanations, region=p["region"], steps=p["steps"],
        fractions=tuple(p["fractions"]), perturbation=p["perturbation"], score=p["score"],
        key=_unit_key(store.config, unit), random_baseline=RANDOM_METHOD in methods,
        chunk_size=EVAL_CHUNK, return_curves=True, progress=False, precision=precision)
    rows = table.drop(columns=["index", "target"]).groupby("method", sort=False).mean().reset_index()
    rows["accuracy"] = accuracy
    store.write_arrays("curves", unit, {m: np.asarray(c).mean(0) for m, c in curves.items()})
    if unit.fold == 0:
        n = min(8, x.shape[0])
        maps = {m: np.asarray(explanations[m](variables, x[:n], target[:n])) for m in explanations}
        store.write_arrays("saliency", unit, {"images": np.asarray(x[:n]), **maps})
    store.write_unit(unit, rows)


def _jobs(store: ResultsStore, pending: Sequence[tuple[Unit, tuple[str, ...]]]) -> list[list[tuple[Unit, tuple]]]:
    """The pending work cut into the pieces processes take: one unit each when models train one
    after another (CPU), one fold each when a fold's grid trains as one vmapped program (so a
    grid always holds the same configurations, whoever trains it)."""
    if grid_strategy() == "sequential":
        return [[item] for item in pending]
    by_fold = defaultdict(list)
    for item in pending:
        by_fold[item[0].fold].append(item)
    return [by_fold[fold] for fold in sorted(by_fold)]


def _open_store(config: StudyConfig, out, overwrite: bool, processes: Processes) -> ResultsStore:
    """Process 0 creates, resumes or overwrites the folder; the others open it after that."""
    store = ResultsStore(out, config, overwrite=overwrite) if processes.is_main else None
    processes.barrier("open", BARRIER_TIMEOUT)
    return store or ResultsStore(out, config)


def run_study(config: StudyConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True,
              data: Optional[tuple] = None, processes: Processes = SINGLE,
              only_folds: Optional[Sequence[int]] = None) -> StudyResult:
    """Run (or resume) the study ``config`` in folder ``out``; write results.csv and report.md.

    ``data``: ``(x, y)`` instead of loading ``config.dataset`` (tests, custom data).
    ``processes``: this process's place in a multi-process run
    (:func:`jaxattr.study.distributed.initialize`): every process runs this with the same
    arguments; each trains and evaluates its share of the pending units
    (:func:`jaxattr.study.distributed.share`) and writes only their files, and process 0 writes
    results.csv and the report once every unit is done. The folder ends as a single process
    leaves it. The returned counts are this process's.
    ``only_folds``: run only these folds now (a benchmark's first fold, a study split over
    sessions); the others stay pending and a later run resumes them.
    """
    start = time.perf_counter()
    store = _open_store(config, out, overwrite, processes)
    config = store.config
    x, y = data if data is not None else load_dataset(config.dataset)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    folds = stratified_folds(y, config.folds, val_fraction=config.training["val_fraction"], seed=config.seed)
    model = _model(config, int(y.max()) + 1)
    fast_model = _fast_model(model, x.shape[1:])
    pending = store.pending()
    skipped = len(config.units()) - len(pending)
    if only_folds is not None:
        pending = [(unit, missing) for unit, missing in pending if unit.fold in set(only_folds)]
    processes.barrier("planned", BARRIER_TIMEOUT)  # every process has read the same pending list
    mine = [item for job in share(_jobs(store, pending), processes) for item in job]
    by_fold = defaultdict(list)
    for unit, missing in mine:
        by_fold[unit.fold].append((unit, missing))
    trained = evaluated = 0
    eval_size = config.perturbation.get("eval_size")
    progress = progress and processes.is_main
    suffix = f" ({processes.label})" if processes.count > 1 else ""
    bar = tqdm(total=len(mine), desc="study units" + suffix, unit="unit", disable=not progress)
    # sequential: train only my units; vmapped grid: my folds are whole, train their grid
    to_train = lambda fold: ([u for u, _ in by_fold[fold]] if grid_strategy() == "sequential"
                             else _fold_units(config, fold))
    models_bar = tqdm(total=sum(len(b) for fold in by_fold for b in _training_batches(store, to_train(fold))),
                      desc="models trained" + suffix, unit="model", disable=not progress)
    for fold in sorted(by_fold):
        x_tr, y_tr, x_val, y_val, x_te, y_te = split_fold(x, y, folds[fold])
        if eval_size is not None:
            x_te, y_te = x_te[:eval_size], y_te[:eval_size]
        trained += _train_fold(store, fast_model, to_train(fold), (x_tr, y_tr, x_val, y_val), fold,
                               progress, models_bar)
        for unit, missing in by_fold[fold]:
            bar.set_postfix_str(unit.key)
            _evaluate_unit(store, model, unit, missing, x_te, y_te, progress, fast_model)
            evaluated += 1
            bar.update()
    bar.close()
    models_bar.close()
    if processes.count > 1:
        wanted = lambda unit: only_folds is None or unit.fold in set(only_folds)  # noqa: E731
        total = sum(1 for unit in config.units() if wanted(unit))
        wait_for_units(lambda: total - sum(1 for unit, _ in store.pending() if wanted(unit)), total, processes,
                       log=(lambda text: print(text, file=sys.stderr, flush=True)) if progress else None)
    results_csv, report = store.results_path, store.root / "report.md"
    if processes.is_main:
        results_csv = store.write_results_csv()
        report = make_report(store)
    processes.barrier("done", BARRIER_TIMEOUT)  # the others leave once the report is written
    return StudyResult(Path(out), results_csv, report, evaluated, skipped,
                       trained, time.perf_counter() - start)


def make_report(store: ResultsStore) -> Path:
    """(Re)write report.md and figures/ of a study folder from what is stored."""
    config = store.config
    results = store.read_results()
    if results.empty:
        units = len(config.units())
        raise StudyStoreError(
            f"{store.root} holds no finished unit yet (0 of {units} units evaluated): there is nothing to "
            f"report. Run jaxattr study with this study's options and --out {store.root} (it resumes) first.")
    curves = store.mean_curves(decay=min(config.decays), group=None) if len(results) else None
    saliency = {}
    for unit in config.units():
        arrays = store.read_arrays("saliency", unit)
        if unit.fold == 0 and arrays and unit.group in (BASELINE_GROUP, "A"):
            images = arrays.pop("images")
            saliency[unit.decay] = (images, arrays)
    return write_report(results, store.root, dataset=config.dataset, curves=curves or None,
                        saliency=saliency or None, perturbation=dict(config.perturbation))

