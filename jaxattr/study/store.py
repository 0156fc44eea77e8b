"""The on-disk results store of a resumable study (Amorim et al. grid: fold x decay x layer group).

Layout of a study folder ``DIR``::

    DIR/config.json                  the study configuration (:class:`StudyConfig`) + store format
    DIR/units/<unit key>.csv         one file per unit of work, one row per evaluated method
    DIR/curves/<unit key>.npz        optional: mean perturbation curve per method (see write_arrays)
    DIR/checkpoints/<unit key>/      optional: the trained model of the unit (written by the runner)
    DIR/results.csv                  all unit files concatenated and sorted (write_results_csv)

A *unit* is one trained model, ``(dataset, fold, decay, group)``. Conventions:

- **Decay 0 is one configuration shared by all groups** (nothing is regularised), stored once per
  fold with ``group = "none"`` (:data:`BASELINE_GROUP`). A decay > 0 never has group ``"none"``.
  :func:`expand_baseline` copies those rows into every group, as the paper's tables show them.
- **The random baseline** (pixels perturbed in random order, Amorim et al. §III-C) is a row with
  ``method = "random"`` (:data:`RANDOM_METHOD`) in every unit file.
- ``accuracy`` is the unit's test accuracy, repeated on each of its rows.

Every unit file lists the methods it has evaluated, so done-ness is tracked per ``(unit, method)``:
methods can be added to an existing study later and only the missing pairs are evaluated (from
the unit's checkpoint, without retraining). :meth:`ResultsStore.write_unit` merges new method rows
into the unit's file.

Every file is written atomically (temporary file in the same folder, ``fsync``, ``os.replace``,
``fsync`` of the folder), so a SIGKILL at any moment leaves each file either old or new, never
partial, and loses at most the unit in progress. One process writes a study folder at a time.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..evaluation.evaluate import drop_column

__all__ = [
    "BASELINE_GROUP",
    "RANDOM_METHOD",
    "CANONICAL_GROUPS",
    "DROP_FRACTIONS",
    "UNIT_COLUMNS",
    "METRIC_COLUMNS",
    "RESULT_COLUMNS",
    "STORE_FORMAT",
    "StudyStoreError",
    "ConfigMismatchError",
    "Unit",
    "StudyConfig",
    "ResultsStore",
    "atomic_write_bytes",
    "atomic_write_text",
    "decay_label",
    "drop_column",
    "expand_baseline",
    "group_sort_key",
    "select_dataset",
    "sort_results",
]

#: Version of this folder layout, stored in config.json.
STORE_FORMAT = 1
#: The group of the decay-0 (unregularised) unit, shared by all groups.
BASELINE_GROUP = "none"
#: The method name of the random-order perturbation baseline.
RANDOM_METHOD = "random"
#: The paper's layer groups, in the order tables list them (other groups sort after, by name).
CANONICAL_GROUPS: tuple[str, ...] = ("B1", "B2", "B3", "D1", "D2", "B", "D", "A")
#: Fractions of pixels of the paper's confidence drops (5 % ... 75 %).
DROP_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75)

UNIT_COLUMNS: tuple[str, ...] = ("dataset", "fold", "decay", "group")


METRIC_COLUMNS: tuple[str, ...] = ("accuracy", "aopc") + tuple(drop_column(f) for f in DROP_FRACTIONS)
RESULT_COLUMNS: tuple[str, ...] = UNIT_COLUMNS + ("method",) + METRIC_COLUMNS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TEXT_COLUMNS = ("dataset", "group", "method")


class StudyStoreError(RuntimeError):
    """The study folder cannot be used as asked (unwritable, inconsistent, bad input)."""


class ConfigMismatchError(StudyStoreError):
    """The study folder holds a study with a different configuration."""


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{kind} must be a non-empty name of letters, digits and . _ + - (starting with a "
            f"letter or digit); got {value!r}")
    return value


def decay_label(decay: float) -> str:
    """Exact, file-name-safe text of a decay: ``0.0``, ``0.0001``, ``1e-05`` (Python's repr)."""
    return repr(float(decay))


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------

def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a hidden temporary file in the same folder (``.<name>.<random>.tmp``), which
    is flushed and fsynced, then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and
    Windows); the folder is fsynced so the rename survives a power cut. On any error the temporary
    file is removed and ``path`` is untouched. A temporary file left by a SIGKILL is ignored by
    every reader of the store.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), _FILE_MODE)  # mkstemp makes 0600; use the usual mode
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Units and configuration
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, order=True)
class Unit:
    """One trained model of the study: ``(dataset, fold, decay, group)``.

    Decay 0 is the unregularised model shared by all groups and has ``group = "none"``
    (:data:`BASELINE_GROUP`); every decay > 0 names a real layer group.
    """

    dataset: str
    fold: int
    decay: float
    group: str

    def __post_init__(self) -> None:
        _check_name("dataset", self.dataset)
        _check_name("group", self.group)
        if isinstance(self.fold, bool) or not isinstance(self.fold, (int, np.integer)) or self.fold < 0:
            raise ValueError(f"fold must be an integer >= 0; got {self.fold!r}")
        decay = float(self.decay)
        if not math.isfinite(decay) or decay < 0:
            raise ValueError(f"decay must be a finite number >= 0; got {self.decay!r}")
        if (decay == 0.0) != (self.group == BASELINE_GROUP):
            raise ValueError(
                f"decay 0 is the one unregularised model shared by all groups and must have group "
                f"{BASELINE_GROUP!r}, and only decay 0 may; got decay={self.decay!r}, group={self.group!r}")
        object.__setattr__(self, "fold", int(self.fold))
        object.__setattr__(self, "decay", decay)

    @property
    def key(self) -> str:
        """File-name key, e.g. ``cifar10_f3_d0.0001_B1``."""
        return f"{self.dataset}_f{self.fold}_d{decay_label(self.decay)}_{self.group}"

    def as_dict(self) -> dict[str, Any]:
        """The unit's columns of results.csv."""
        return dataclasses.asdict(self)


def _jsonable(value: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A JSON round trip of ``value`` (tuples become lists), so stored and requested compare equal."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of JSON values; got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must hold JSON values only (str, number, bool, list, dict): {error}") from None


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What a study folder was created for; resuming requires the same configuration.

    Attributes:
      dataset: dataset name (``"digits"``, ``"cifar10"``, ...).
      folds: number of cross-validation folds K (all K folds are units of the study).
      decays: L2 weight decays (sorted, duplicates dropped); 0 adds the shared baseline model.
      groups: layer groups regularised for every decay > 0 (``B1`` ... ``A``).
      methods: attribution method names; ``"random"`` is not one (see ``random_baseline``).
      perturbation: settings of the perturbation metric (region, steps, fill, score, ...).
      training: settings of training (optimizer, epochs, patience, model, ...).
      seed: the study's random seed.
      random_baseline: also evaluate the random-order baseline (``method = "random"``).
      version: free-form version of the code that produced the numbers (e.g. jaxattr's).

    ``methods`` (and ``random_baseline``) may grow between runs on the same folder; any other
    difference makes :class:`ResultsStore` refuse the folder.
    """

    dataset: str
    folds: int
    decays: tuple[float, ...]
    groups: tuple[str, ...]
    methods: tuple[str, ...]
    perturbation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    random_baseline: bool = True
    version: str = ""

    #: Fields that may grow on an existing folder (their union is kept).
    ADDITIVE_FIELDS: ClassVar[tuple[str, ...]] = ("methods", "random_baseline")

    def __post_init__(self) -> None:
        _check_name("dataset", self.dataset)
        if isinstance(self.folds, bool) or not isinstance(self.folds, (int, np.integer)) or self.folds < 1:
            raise ValueError(f"folds must be an integer >= 1; got {self.folds!r}")
        if isinstance(self.decays, (str, bytes)) or not isinstance(self.decays, Iterable):
            raise TypeError(f"decays must be a sequence of numbers; got {self.decays!r}")
        try:
            decays = tuple(sorted({float(d) for d in self.decays}))
        except (TypeError, ValueError):
            raise ValueError(f"decays must be numbers; got {self.decays!r}") from None
        if not decays or any(not math.isfinite(d) or d < 0 for d in decays):
            raise ValueError(f"decays must be one or more finite numbers >= 0; got {self.decays!r}")
        groups = _unique(_check_name("group", g) for g in _as_names(self.groups, "groups"))
        if BASELINE_GROUP in groups:
            raise ValueError(f"group {BASELINE_GROUP!r} is reserved for the decay-0 model; got groups={groups}")
        if any(d > 0 for d in decays) and not groups:
            raise ValueError(f"decays > 0 need at least one group; got decays={decays}, groups=()")
        methods = _unique(_check_name("method", m) for m in _as_names(self.methods, "methods"))
        if RANDOM_METHOD in methods:
            raise ValueError(f"{RANDOM_METHOD!r} is the baseline, set by random_baseline=True, not a method")
        if not methods and not self.random_baseline:
            raise ValueError("the study needs at least one method or random_baseline=True")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer; got {self.seed!r}")
        for name, value in (("folds", int(self.folds)), ("decays", decays), ("groups", groups),
                            ("methods", methods), ("seed", int(self.seed)),
                            ("random_baseline", bool(self.random_baseline)), ("version", str(self.version)),
                            ("perturbation", _jsonable(self.perturbation, "perturbation")),
                            ("training", _jsonable(self.training, "training"))):
            object.__setattr__(self, name, value)

    @property
    def all_methods(self) -> tuple[str, ...]:
        """The methods each unit evaluates: ``methods`` plus ``"random"`` if ``random_baseline``."""
        return self.methods + ((RANDOM_METHOD,) if self.random_baseline else ())

    def units(self) -> tuple[Unit, ...]:
        """Every unit, fold-major: per fold, the decay-0 model (if 0 is a decay), then decay x group."""
        units = []
        for fold in range(self.folds):
            for decay in self.decays:
                for group in (BASELINE_GROUP,) if decay == 0 else self.groups:
                    units.append(Unit(self.dataset, fold, decay, group))
        return tuple(units)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for tuples)."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown study configuration keys {unknown}; known: {sorted(names)}")
        return cls(**dict(data))

    def differences(self, other: StudyConfig) -> list[str]:
        """``"field: stored X, requested Y"`` for every field where ``other`` differs from this one;
        inside the nested settings, one line per differing setting (``"perturbation.steps: stored
        10, requested 5"``), not the whole dicts."""
        return _differences("", self.to_dict(), other.to_dict())

    def merged_with(self, requested: StudyConfig) -> StudyConfig:
        """This (stored) configuration grown by the methods of ``requested``.

        Raises :class:`ConfigMismatchError` naming each differing field if any field other than
        :attr:`ADDITIVE_FIELDS` differs.
        """
        grown = {}
        for name in self.ADDITIVE_FIELDS:
            mine, theirs = getattr(self, name), getattr(requested, name)
            grown[name] = _unique(mine + theirs) if isinstance(mine, tuple) else (mine or theirs)
        merged = dataclasses.replace(self, **grown)
        differences = merged.differences(dataclasses.replace(requested, **grown))
        if differences:
            raise ConfigMismatchError("\n".join(f"  {line}" for line in differences))
        return merged


_ABSENT = "(not set)"


def _differences(path: str, mine: Any, theirs: Any) -> list[str]:
    """Lines ``"path: stored X, requested Y"`` for every leaf where two JSON values differ."""
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        keys = list(mine) + [k for k in theirs if k not in mine]
        return [line for key in keys
                for line in _differences(f"{path}.{key}" if path else key, mine.get(key, _ABSENT),
                                         theirs.get(key, _ABSENT))]
    if mine == theirs:
        return []
    show = lambda value: value if value is _ABSENT else repr(value)
    return [f"{path}: stored {show(mine)}, requested {show(theirs)}"]


def _as_names(values: object, name: str) -> tuple[Any, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of names; got {values!r}")
    return tuple(values)


# --------------------------------------------------------------------------------------------
# Results frames
# --------------------------------------------------------------------------------------------

def group_sort_key(group: str) -> tuple[int, str]:
    """Sort key of a group: ``none``, then B1 B2 B3 D1 D2 B D A, then other groups by name."""
    if group == BASELINE_GROUP:
        return (0, "")
    if group in CANONICAL_GROUPS:
        return (1 + CANONICAL_GROUPS.index(group), "")
    return (1 + len(CANONICAL_GROUPS), group)


def _empty_results() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=float) for c in RESULT_COLUMNS})
    return frame.astype({"dataset": str, "fold": "int64", "group": str, "method": str})


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, whatever order the files were read in.

    Order: dataset, fold, decay, group (``none``, then B1 B2 B3 D1 D2 B D A, then others by name),
    method (by name, ``random`` last). Columns: :data:`RESULT_COLUMNS`, then extra columns by name.
    """
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results lack the columns {missing}; expected {list(RESULT_COLUMNS)}")
    results = results.reset_index(drop=True)
    keys = pd.DataFrame({
        "dataset": results["dataset"].astype(str),
        "fold": results["fold"].astype("int64"),
        "decay": results["decay"].astype(float),
        "group_rank": [group_sort_key(g)[0] for g in results["group"]],
        "group": [group_sort_key(g)[1] for g in results["group"]],
        "random_last": results["method"].astype(str) == RANDOM_METHOD,
        "method": results["method"].astype(str),
    }, index=results.index)
    order = keys.sort_values(list(keys.columns), kind="mergesort").index
    extra = sorted(c for c in results.columns if c not in RESULT_COLUMNS)
    return results.loc[order, list(RESULT_COLUMNS) + extra].reset_index(drop=True)


def select_dataset(results: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """The rows of ``dataset``; with ``None``, ``results`` itself if it holds a single dataset.

    Raises ``ValueError`` if ``dataset`` is absent, or is ``None`` and there are several datasets.
    """
    if "dataset" not in results.columns:
        raise ValueError("results lack the column 'dataset'")
    datasets = sorted(set(results["dataset"]))
    if dataset is None:
        if len(datasets) > 1:
            raise ValueError(f"results hold several datasets {datasets}; pass dataset=")
        return results
    if dataset not in datasets:
        raise ValueError(f"dataset {dataset!r} is not in the results (datasets: {datasets})")
    return results.loc[results["dataset"] == dataset]


def expand_baseline(results: pd.DataFrame, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Copy the decay-0 rows (group ``"none"``) into every group, as Amorim et al.'s tables do.

    ``groups`` defaults to the groups present in ``results`` other than ``"none"``. The returned
    frame has no ``"none"`` rows; the decay-0 values of every group are the same model's.
    """
    baseline = results["group"] == BASELINE_GROUP
    if groups is None:
        groups = [g for g in _unique(results["group"]) if g != BASELINE_GROUP]
        groups = sorted(groups, key=group_sort_key)
    copies = [results.loc[baseline].assign(group=group) for group in groups]
    return pd.concat([results.loc[~baseline], *copies], ignore_index=True)


def _read_csv(data: str | os.PathLike[str] | io.StringIO) -> pd.DataFrame:
    """Read a results CSV without turning names such as ``NA`` or ``none`` into missing values."""
    frame = pd.read_csv(data, keep_default_na=False, na_values=[""],
                        dtype={c: str for c in _TEXT_COLUMNS})
    return frame.astype({"fold": "int64", "decay": float}) if len(frame) else frame


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

_FRESH_HINT = ("To resume, run again with the same options as in {config} (methods may be added). "
               "To start fresh, choose a new output folder or pass --overwrite (overwrite=True), "
               "which deletes this study folder.")


class ResultsStore:
    """A study folder: configuration, one file per finished unit, aggregated results.csv.

    ``ResultsStore(root, config)`` opens ``root`` for ``config``, creating the folder and its
    ``config.json`` when absent. An existing folder must hold the same configuration, except that
    methods may be added (:attr:`config` is then the union and the new ``(unit, method)`` pairs
    are pending). ``overwrite=True`` deletes an existing study folder first.
    ``ResultsStore(root)`` opens an existing study with its stored configuration (e.g. to report).

    Raises:
      ConfigMismatchError: the folder holds a study with another configuration.
      StudyStoreError: the folder cannot be created or written, or is not a study folder.
    """

    CONFIG_NAME = "config.json"
    RESULTS_NAME = "results.csv"
    UNITS_DIR = "units"

    def __init__(self, root: str | os.PathLike[str], config: StudyConfig | None = None, *,
                 overwrite: bool = False) -> None:
        self.root = Path(root)
        if config is None:
            if overwrite:
                raise ValueError("overwrite=True needs the configuration of the new study")
            self.config = self._read_config()
            return
        if not isinstance(config, StudyConfig):
            raise TypeError(f"config must be a StudyConfig; got {type(config).__name__}")
        if overwrite:
            self._delete_study()
        self._make_writable()
        if self.config_path.exists():
            self.config = self._resume(config)
        else:
            if (self.root / self.UNITS_DIR).exists():
                raise StudyStoreError(
                    f"{self.root} has a {self.UNITS_DIR}/ folder but no {self.CONFIG_NAME}: it is not a "
                    f"complete study folder. Choose a new output folder or restore {self.CONFIG_NAME}.")
            self.config = config
            self._write_config(config)
        (self.root / self.UNITS_DIR).mkdir(exist_ok=True)

    # -- paths --------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG_NAME

    @property
    def results_path(self) -> Path:
        return self.root / self.RESULTS_NAME

    def unit_path(self, unit: Unit) -> Path:
        """``DIR/units/<unit key>.csv``."""
        return self.root / self.UNITS_DIR / f"{unit.key}.csv"

    def checkpoint_dir(self, unit: Unit) -> Path:
        """``DIR/checkpoints/<unit key>/``, for the unit's trained parameters (parent created).

        Write the checkpoint before the unit's results, so that a unit file implies a checkpoint
        and added methods can be evaluated without retraining.
        """
        path = self.root / "checkpoints" / unit.key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def artifact_path(self, kind: str, unit: Unit, suffix: str = ".npz") -> Path:
        """``DIR/<kind>/<unit key><suffix>``, e.g. ``curves/cifar10_f0_d0.0_none.npz``."""
        _check_name("kind", kind)
        if kind in (self.UNITS_DIR, "checkpoints"):
            raise ValueError(f"kind {kind!r} is reserved by the store")
        return self.root / kind / f"{unit.key}{suffix}"

    # -- configuration ------------------------------------------------------------------------

    def _read_config(self) -> StudyConfig:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StudyStoreError(f"{self.root} is not a study folder: {self.CONFIG_NAME} is missing") from None
        except (OSError, ValueError) as error:
            raise StudyStoreError(f"cannot read {self.config_path}: {error}") from None
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or "study" not in data:
            raise StudyStoreError(
                f"{self.config_path} is not a jaxattr study configuration of format {STORE_FORMAT} "
                f"(found format {data.get('format') if isinstance(data, dict) else None!r}). "
                + _FRESH_HINT.format(config=self.config_path))
        try:
            return StudyConfig.from_dict(data["study"])
        except (TypeError, ValueError) as error:
            raise StudyStoreError(f"{self.config_path} holds an invalid configuration: {error}") from None

    def _write_config(self, config: StudyConfig) -> None:
        text = json.dumps({"format": STORE_FORMAT, "study": config.to_dict()}, indent=2, sort_keys=True)
        atomic_write_text(self.config_path, text + "\n")

    def _resume(self, requested: StudyConfig) -> StudyConfig:
        stored = self._read_config()
        try:
            merged = stored.merged_with(requested)
        except ConfigMismatchError as error:
            raise ConfigMismatchError(
                f"{self.root} holds a study with another configuration:\n{error}\n"
                + _FRESH_HINT.format(config=self.config_path)) from None
        if merged != stored:
            self._write_config(merged)
        return merged

    def _make_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".write-probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise StudyStoreError(
                f"cannot write to the study folder {self.root}: {error.strerror or error}. "
                f"Choose a writable output folder.") from None

    def _delete_study(self) -> None:
        if not self.root.exists():
            return
        if not self.config_path.exists():
            if any(self.root.iterdir()):
                raise StudyStoreError(
                    f"refusing to overwrite {self.root}: it is not empty and holds no {self.CONFIG_NAME}, "
                    f"so it is not a study folder. Choose a new output folder.")
            return
        try:
            ours = "format" in json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise StudyStoreError(
                f"refusing to overwrite {self.root}: its {self.CONFIG_NAME} is not a jaxattr study "
                f"configuration. Choose a new output folder.")
        shutil.rmtree(self.root)

    # -- units --------------------------------------------------------------------------------

    def read_unit(self, unit: Unit) -> pd.DataFrame:
        """The rows stored for ``unit`` (empty frame with the result columns when none)."""
        try:
            return _read_csv(self.unit_path(unit))
        except FileNotFoundError:
            return _empty_results()

    def done_methods(self, unit: Unit) -> frozenset[str]:
        """Methods already evaluated for ``unit``."""
        return frozenset(self.read_unit(unit)["method"])

    def missing_methods(self, unit: Unit, methods: Sequence[str] | None = None) -> tuple[str, ...]:
        """Methods of ``methods`` (default :attr:`StudyConfig.all_methods`) not yet stored for ``unit``."""
        done = self.done_methods(unit)
        return tuple(m for m in (self.config.all_methods if methods is None else methods) if m not in done)

    def is_done(self, unit: Unit, methods: Sequence[str] | None = None) -> bool:
        """Whether ``unit`` has results for every method (default: all of the configuration)."""
        return not self.missing_methods(unit, methods)

    def pending(self) -> list[tuple[Unit, tuple[str, ...]]]:
        """``(unit, missing methods)`` for every unit of the configuration that is not done, in order."""
        pending = []
        for unit in self.config.units():
            missing = self.missing_methods(unit)
            if missing:
                pending.append((unit, missing))
        return pending

    def _check_unit(self, unit: Unit) -> None:
        if not isinstance(unit, Unit):
            raise TypeError(f"unit must be a Unit; got {type(unit).__name__}")
        if unit not in set(self.config.units()):
            raise ValueError(f"{unit} is not a unit of this study (dataset {self.config.dataset!r}, "
                             f"folds {self.config.folds}, decays {self.config.decays}, groups {self.config.groups})")

    def _validated_rows(self, unit: Unit, rows: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(rows, pd.DataFrame) or rows.empty:
            raise ValueError("rows must be a non-empty DataFrame with one row per method")
        missing = [c for c in ("method",) + METRIC_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"rows lack the columns {missing}; each row needs method and {list(METRIC_COLUMNS)}")
        rows = rows.copy()
        for column, value in unit.as_dict().items():
            if column in rows.columns:
                given = rows[column].astype(type(value))
                if not (given == value).all():
                    raise ValueError(f"rows have {column} {sorted(set(given))} but the unit has {value!r}")
            rows[column] = value
        duplicated = sorted(set(rows.loc[rows["method"].duplicated(), "method"]))
        if duplicated:
            raise ValueError(f"rows repeat the methods {duplicated}; give one row per method")
        unknown = sorted(set(rows["method"]) - set(self.config.all_methods))
        if unknown:
            raise ValueError(f"methods {unknown} are not in the study's methods {list(self.config.all_methods)}; "
                             f"open the store with a configuration that adds them")
        try:
            rows[list(METRIC_COLUMNS)] = rows[list(METRIC_COLUMNS)].astype(float)
        except (TypeError, ValueError) as error:
            raise ValueError(f"metric columns must be numeric: {error}") from None
        return rows

    def write_unit(self, unit: Unit, rows: pd.DataFrame) -> Path:
        """Store the results of ``unit``: one row per method, with :data:`METRIC_COLUMNS`.

        Rows are merged with the methods already stored for the unit (a method given again
        replaces its row). Unit columns may be omitted (they are filled in) or must match ``unit``.
        Extra columns are kept. The file is replaced atomically. Returns its path.
        """
        self._check_unit(unit)
        rows = self._validated_rows(unit, rows)
        old = self.read_unit(unit)
        old = old.loc[~old["method"].isin(rows["method"])]
        merged = rows if old.empty else pd.concat([old, rows], ignore_index=True)
        return atomic_write_text(self.unit_path(unit), sort_results(merged).to_csv(index=False))

    def read_results(self) -> pd.DataFrame:
        """All unit files concatenated, in the order of :func:`sort_results` (independent of disk order)."""
        files = sorted((self.root / self.UNITS_DIR).glob("*.csv"))
        frames = [frame for frame in map(_read_csv, files) if len(frame)]
        if not frames:
            return _empty_results()
        return sort_results(pd.concat(frames, ignore_index=True))

    def write_results_csv(self) -> Path:
        """Write ``DIR/results.csv`` (all units, sorted) atomically; returns its path."""
        return atomic_write_text(self.results_path, self.read_results().to_csv(index=False))

    # -- per-unit arrays (perturbation curves, saliency samples, ...) ---------------------------

    def write_arrays(self, kind: str, unit: Unit, arrays: Mapping[str, np.ndarray]) -> Path:
        """Store named arrays of ``unit`` in ``DIR/<kind>/<unit key>.npz``, merged with those there.

        E.g. ``write_arrays("curves", unit, {"lrp": mean_curve, "random": mean_curve})``.
        """
        self._check_unit(unit)
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError("arrays must be a non-empty mapping of name -> array")
        merged = self.read_arrays(kind, unit)
        merged.update({_check_name("array name", name): np.asarray(value) for name, value in arrays.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **merged)
        return atomic_write_bytes(self.artifact_path(kind, unit), buffer.getvalue())

    def read_arrays(self, kind: str, unit: Unit) -> dict[str, np.ndarray]:
        """The arrays stored by :meth:`write_arrays` (empty dict when none)."""
        try:
            with np.load(self.artifact_path(kind, unit), allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except FileNotFoundError:
            return {}

    def write_curves(self, unit: Unit, curves: Mapping[str, np.ndarray]) -> Path:
        """Mean perturbation curve per method of ``unit`` (``DIR/curves/<unit key>.npz``)."""
        return self.write_arrays("curves", unit, curves)

    def read_curves(self, unit: Unit) -> dict[str, np.ndarray]:
        """Inverse of :meth:`write_curves`."""
        return self.read_arrays("curves", unit)

    def mean_curves(self, *, decay: float | None = None, group: str | None = None) -> dict[str, np.ndarray]:
        """Per method, the mean of the stored curves over the units matching ``decay``/``group``.

        Units are all of the configuration's (every fold); ``None`` matches any. Methods whose
        curves have different lengths across units raise ``ValueError``.
        """
        collected: dict[str, list[np.ndarray]] = {}
        for unit in self.config.units():
            if (decay is not None and unit.decay != float(decay)) or (group is not None and unit.group != group):
                continue
            for method, curve in self.read_curves(unit).items():
                collected.setdefault(method, []).append(np.asarray(curve, dtype=float))
        means = {}
        for method, curves in collected.items():
            if len({c.shape for c in curves}) > 1:
                raise ValueError(f"curves of {method!r} have different shapes {sorted({c.shape for c in curves})}")
            means[method] = np.mean(curves, axis=0)
        return means
