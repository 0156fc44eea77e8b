"""The resumable results store: layout, atomic writes, resume, configuration checks."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxattr.study import store as store_module
from jaxattr.study.store import (
    BASELINE_GROUP,
    METRIC_COLUMNS,
    RANDOM_METHOD,
    RESULT_COLUMNS,
    ConfigMismatchError,
    ResultsStore,
    StudyConfig,
    StudyStoreError,
    Unit,
    expand_baseline,
    sort_results,
)

REPO = Path(__file__).resolve().parents[2]


def make_config(**overrides) -> StudyConfig:
    settings = dict(dataset="digits", folds=2, decays=(0, 1e-3, 1e-2), groups=("B1", "A"),
                    methods=("lrp", "gradient"), perturbation={"steps": 10, "region": 1}, seed=3)
    settings.update(overrides)
    return StudyConfig(**settings)


def unit_rows(unit: Unit, methods, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"method": list(methods)})
    for column in METRIC_COLUMNS:
        rows[column] = rng.random(len(rows))
    rows["accuracy"] = rng.random()
    return rows


def fill(store: ResultsStore, units=None, seed: int = 0) -> None:
    for i, unit in enumerate(store.config.units() if units is None else units):
        store.write_unit(unit, unit_rows(unit, store.config.all_methods, seed + i))


# -- configuration and units ------------------------------------------------------------------

def test_config_is_normalised_and_round_trips_through_json():
    config = make_config(decays=[1e-2, 0, 1e-3, 1e-3], groups=["B1", "A", "B1"], perturbation={"fracs": (0.1, 0.2)})
    assert config.decays == (0.0, 1e-3, 1e-2)
    assert config.groups == ("B1", "A")
    assert config.perturbation == {"fracs": [0.1, 0.2]}
    assert config.all_methods == ("lrp", "gradient", RANDOM_METHOD)
    assert StudyConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("overrides, message", [
    (dict(folds=0), "folds"),
    (dict(decays=()), "decays"),
    (dict(decays=(-1.0,)), "decays"),
    (dict(groups=("none",)), "reserved"),
    (dict(groups=("B 1",)), "group"),
    (dict(methods=("random",)), "baseline"),
    (dict(perturbation={"fill": object()}), "JSON"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_config(**overrides)


def test_units_share_decay_zero_across_groups():
    config = make_config(folds=10, decays=(0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2),
                         groups=("B1", "B2", "B3", "D1", "D2", "B", "D", "A"))
    units = config.units()
    assert len(units) == 10 * (1 + 5 * 8)  # 41 configurations per fold
    baseline = [u for u in units if u.decay == 0]
    assert len(baseline) == 10 and {u.group for u in baseline} == {BASELINE_GROUP}
    assert len({u.key for u in units}) == len(units)
    assert units[0].key == "digits_f0_d0.0_none" and units[1].key == "digits_f0_d0.0001_B1"


@pytest.mark.parametrize("decay, group", [(0.0, "A"), (1e-3, BASELINE_GROUP), (-1.0, "A")])
def test_unit_rejects_inconsistent_decay_and_group(decay, group):
    with pytest.raises(ValueError):
        Unit("digits", 0, decay, group)


# -- writing, reading, resuming ---------------------------------------------------------------

def test_write_read_round_trip_is_exact(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    unit = Unit("digits", 1, 1e-3, "A")
    rows = unit_rows(unit, store.config.all_methods, 7)
    rows["note"] = ["x", "NA", "none"]  # extra columns survive, names are not read as missing
    store.write_unit(unit, rows)
    back = store.read_unit(unit)
    assert list(back.columns) == list(RESULT_COLUMNS) + ["note"]
    back = back.set_index("method").loc[rows["method"]]
    np.testing.assert_array_equal(back[list(METRIC_COLUMNS)].to_numpy(), rows[list(METRIC_COLUMNS)].to_numpy())
    assert list(back["note"]) == ["x", "NA", "none"]
    assert (back["fold"] == 1).all() and (back["decay"] == 1e-3).all() and (back["group"] == "A").all()


def test_results_are_sorted_and_independent_of_write_order(tmp_path):
    config = make_config()
    units = list(config.units())
    first, second = ResultsStore(tmp_path / "a", config), ResultsStore(tmp_path / "b", config)
    fill(first, units)
    shuffled = units[:]
    random.Random(0).shuffle(shuffled)
    for unit in shuffled:
        second.write_unit(unit, unit_rows(unit, config.all_methods, units.index(unit)).iloc[::-1])
    first_csv, second_csv = first.write_results_csv(), second.write_results_csv()
    assert first_csv.read_bytes() == second_csv.read_bytes()
    results = first.read_results()
    assert len(results) == len(units) * 3
    assert results.equals(sort_results(results.sample(frac=1.0, random_state=1)))
    head = results.iloc[:6]
    assert list(head["group"]) == [BASELINE_GROUP] * 3 + ["B1"] * 3
    assert list(head["method"][:3]) == ["gradient", "lrp", RANDOM_METHOD]
    assert pd.read_csv(first_csv, keep_default_na=False).shape == results.shape


def test_resume_skips_finished_units(tmp_path):
    config = make_config()
    store = ResultsStore(tmp_path / "study", config)
    done = config.units()[:3]
    fill(store, done)
    resumed = ResultsStore(tmp_path / "study", make_config())
    assert all(resumed.is_done(unit) for unit in done)
    pending = [unit for unit, _ in resumed.pending()]
    assert pending == list(config.units()[3:])
    assert all(methods == config.all_methods for _, methods in resumed.pending())


def test_config_mismatch_says_what_differs_and_how_to_go_on(tmp_path):
    ResultsStore(tmp_path / "study", make_config())
    with pytest.raises(ConfigMismatchError) as error:
        ResultsStore(tmp_path / "study", make_config(folds=5, perturbation={"steps": 20, "region": 1}))
    message = str(error.value)
    assert "folds: stored 2, requested 5" in message
    assert "perturbation" in message and "decays" not in message
    assert "same options" in message and "--overwrite" in message


def test_adding_methods_is_allowed_and_only_the_new_pairs_are_pending(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    fill(store)
    before = store.read_results()
    grown = ResultsStore(tmp_path / "study", make_config(methods=("lrp", "deconvnet")))
    assert grown.config.methods == ("lrp", "gradient", "deconvnet")
    assert json.loads((tmp_path / "study" / "config.json").read_text())["study"]["methods"] == list(grown.config.methods)
    pending = grown.pending()
    assert len(pending) == len(grown.config.units())
    assert {methods for _, methods in pending} == {("deconvnet",)}
    unit = pending[0][0]
    grown.write_unit(unit, unit_rows(unit, ["deconvnet"]))
    assert grown.is_done(unit)
    merged = grown.read_unit(unit)
    assert sorted(merged["method"]) == ["deconvnet", "gradient", "lrp", RANDOM_METHOD]
    kept = merged.loc[merged["method"] != "deconvnet"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before.loc[before["group"] == BASELINE_GROUP].iloc[:3].reset_index(drop=True))
    # a request with fewer methods resumes the folder too, keeping the union
    assert ResultsStore(tmp_path / "study", make_config(methods=("lrp",))).config.methods == grown.config.methods


def test_overwrite_starts_fresh(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    fill(store)
    fresh = ResultsStore(tmp_path / "study", make_config(folds=3), overwrite=True)
    assert fresh.read_results().empty and fresh.config.folds == 3


def test_overwrite_refuses_folders_that_are_not_studies(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(StudyStoreError, match="not a study folder"):
        ResultsStore(tmp_path, make_config(), overwrite=True)
    assert (tmp_path / "precious.txt").exists()


def test_open_without_config_reads_the_stored_one(tmp_path):
    ResultsStore(tmp_path / "study", make_config())
    assert ResultsStore(tmp_path / "study").config == make_config()
    with pytest.raises(StudyStoreError, match="not a study folder"):
        ResultsStore(tmp_path / "elsewhere")


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StudyStoreError, match="cannot write to the study folder"):
        ResultsStore(blocker / "study", make_config())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StudyStoreError, match="cannot write to the study folder"):
            ResultsStore(folder, make_config())
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows.drop(columns="aopc"), "lack the columns"),
    (lambda rows: rows.assign(method=["lrp", "lrp", "random"]), "repeat"),
    (lambda rows: rows.assign(method=["lrp", "smoothgrad", "random"]), "not in the study's methods"),
    (lambda rows: rows.assign(fold=1), "fold"),
    (lambda rows: rows.assign(aopc="high"), "numeric"),
    (lambda rows: rows.iloc[:0], "non-empty"),
])
def test_write_unit_validates_rows(tmp_path, mutate, message):
    store = ResultsStore(tmp_path / "study", make_config())
    unit = Unit("digits", 0, 1e-3, "A")
    with pytest.raises(ValueError, match=message):
        store.write_unit(unit, mutate(unit_rows(unit, store.config.all_methods)))
    assert not store.unit_path(unit).exists()


def test_write_unit_rejects_units_outside_the_study(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    with pytest.raises(ValueError, match="not a unit of this study"):
        store.write_unit(Unit("digits", 5, 1e-3, "A"), unit_rows(Unit("digits", 5, 1e-3, "A"), ["lrp"]))


# -- atomicity --------------------------------------------------------------------------------

def test_crash_before_replace_leaves_no_partial_file(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "study", make_config())
    new_unit, old_unit = Unit("digits", 0, 1e-3, "A"), Unit("digits", 0, 1e-2, "A")
    store.write_unit(old_unit, unit_rows(old_unit, ["lrp"]))
    before = store.unit_path(old_unit).read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between the temporary write and the rename")

    monkeypatch.setattr(store_module.os, "replace", crash)
    for unit in (new_unit, old_unit):
        with pytest.raises(KeyboardInterrupt):
            store.write_unit(unit, unit_rows(unit, store.config.all_methods, 9))
    monkeypatch.undo()
    assert not store.unit_path(new_unit).exists()
    assert store.unit_path(old_unit).read_bytes() == before
    assert not list((tmp_path / "study").rglob("*.tmp"))
    assert not store.is_done(new_unit) and store.done_methods(old_unit) == {"lrp"}


def test_stale_temporary_files_are_ignored(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    unit = Unit("digits", 0, 1e-3, "A")
    (tmp_path / "study" / "units" / f".{unit.key}.csv.abc123.tmp").write_text("dataset,fold,deca")
    assert store.read_results().empty
    assert not store.is_done(unit)
    store.write_unit(unit, unit_rows(unit, store.config.all_methods))
    assert len(store.read_results()) == 3


_WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np, pandas as pd
    from jaxattr.study.store import ResultsStore, StudyConfig, METRIC_COLUMNS
    fsync = os.fsync
    def slow_fsync(fd):  # widen the window between the temporary write and the rename
        time.sleep(0.02)
        fsync(fd)
    os.fsync = slow_fsync
    config = StudyConfig(dataset="digits", folds=2, decays=(0, 1e-3), groups=("A",), methods=("lrp",))
    store = ResultsStore(sys.argv[1], config)
    version = 0
    while True:
        for unit in config.units():
            rows = pd.DataFrame({"method": ["lrp", "random"]})
            for column in METRIC_COLUMNS:
                rows[column] = float(version)
            rows["version"] = version
            rows["padding"] = "x" * 200_000
            store.write_unit(unit, rows)
            version += 1
            if version == 1:
                print("ready", flush=True)
""")


def test_sigkill_mid_write_leaves_only_whole_files(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "study")], stdout=subprocess.PIPE,
                             env=env, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    store = ResultsStore(tmp_path / "study")
    results = store.read_results()
    assert len(results) >= 2
    for _, rows in results.groupby(["fold", "decay", "group"]):
        assert sorted(rows["method"]) == ["lrp", "random"]
        assert rows["version"].nunique() == 1 and (rows["aopc"] == rows["version"]).all()
        assert (rows["padding"].str.len() == 200_000).all()


# -- per-unit artefacts -------------------------------------------------------------------------

def test_curves_merge_and_average(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    first, second = Unit("digits", 0, 1e-3, "A"), Unit("digits", 1, 1e-3, "A")
    store.write_curves(first, {"lrp": np.array([1.0, 0.5, 0.0])})
    store.write_curves(first, {"random": np.array([1.0, 0.9, 0.8])})
    store.write_curves(second, {"lrp": np.array([1.0, 0.7, 0.2])})
    assert sorted(store.read_curves(first)) == ["lrp", "random"]
    assert store.artifact_path("curves", first) == tmp_path / "study" / "curves" / f"{first.key}.npz"
    means = store.mean_curves(decay=1e-3, group="A")
    np.testing.assert_allclose(means["lrp"], [1.0, 0.6, 0.1])
    np.testing.assert_allclose(means["random"], [1.0, 0.9, 0.8])
    assert store.mean_curves(group="B1") == {}
    assert store.read_curves(Unit("digits", 0, 1e-2, "A")) == {}


def test_checkpoint_dir_is_per_unit(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    unit = Unit("digits", 0, 0.0, BASELINE_GROUP)
    path = store.checkpoint_dir(unit)
    assert path == tmp_path / "study" / "checkpoints" / "digits_f0_d0.0_none"
    assert path.parent.is_dir()


def test_expand_baseline_copies_decay_zero_into_every_group(tmp_path):
    store = ResultsStore(tmp_path / "study", make_config())
    fill(store)
    results = store.read_results()
    expanded = expand_baseline(results)
    assert BASELINE_GROUP not in set(expanded["group"])
    baseline = results.loc[results["group"] == BASELINE_GROUP, "aopc"].to_numpy()
    for group in ("B1", "A"):
        zero = expanded.loc[(expanded["group"] == group) & (expanded["decay"] == 0)]
        np.testing.assert_array_equal(np.sort(zero["aopc"].to_numpy()), np.sort(baseline))
    assert len(expanded) == len(results) + len(baseline)


def test_config_mismatch_names_the_one_differing_nested_setting(tmp_path):
    """Issue #22: the message named the whole nested dicts (``perturbation: stored {...}, requested
    {...}``), burying the one setting that differs."""
    perturbation = {"region": 1, "steps": 10, "perturbation": "uniform", "score": "probability", "fractions": [0.1]}
    ResultsStore(tmp_path / "study", make_config(perturbation=perturbation))
    with pytest.raises(ConfigMismatchError) as error:
        ResultsStore(tmp_path / "study", make_config(perturbation={**perturbation, "steps": 20, "seed_extra": 1}))
    message = str(error.value)
    assert "perturbation.steps: stored 10, requested 20" in message
    assert "perturbation.seed_extra: stored (not set), requested 1" in message
    assert "region" not in message and "uniform" not in message  # the settings that agree are not repeated
