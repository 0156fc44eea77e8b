"""The study end to end on a slice of digits: files, resume, interruption, bad input."""

import filecmp

import numpy as np
import pytest

from jaxattr.data import load_digits
from jaxattr.study import runner
from jaxattr.study.store import ConfigMismatchError

TINY = dict(folds=2, decays=(0.0, 1e-2), groups=("A",), methods=("gradient",), epochs=2,
            patience=2, width="small", eval_size=12, batch_size=32)


@pytest.fixture(scope="module")
def data():
    x, y = load_digits()
    return x[:300], y[:300]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("study")
    result = runner.run_study(runner.study_config(**TINY), out, progress=False, data=data)
    # later tests add a method to this folder: keep the uninterrupted run's results apart
    (out.parent / "reference_results.csv").write_bytes((out / "results.csv").read_bytes())
    return out, result


def _reference(finished):
    """results.csv of the uninterrupted TINY study, as it was when it finished."""
    return finished[0].parent / "reference_results.csv"


def test_study_writes_every_file(finished):
    out, result = finished
    assert result.units_evaluated == 4 and result.models_trained == 4
    for name in ("config.json", "results.csv", "report.md", "friedman.csv"):
        assert (out / name).exists(), name
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"gradient", "random"}
    assert len(results) == 2 * 2 * 2  # folds x units per fold x methods
    assert results[["accuracy", "aopc", "drop_5", "drop_75"]].notna().all().all()
    assert len(list((out / "figures").glob("*.png"))) >= 3
    assert "Table II" in (out / "report.md").read_text()
    assert "finished" not in result.summary() and str(out) in result.summary()


def test_rerun_is_a_no_op(finished, data):
    out, _ = finished
    before = (out / "results.csv").read_bytes()
    again = runner.run_study(runner.study_config(**TINY), out, progress=False, data=data)
    assert again.units_evaluated == 0 and again.models_trained == 0 and again.units_skipped == 4
    assert (out / "results.csv").read_bytes() == before


def _killed_then_resumed(monkeypatch, tmp_path, data, function: str, survives: int):
    """Run TINY with ``runner.<function>`` dying on call ``survives + 1``, then resume it."""
    real = getattr(runner, function)
    calls = []

    def dies(*args, **kwargs):
        if len(calls) == survives:
            raise KeyboardInterrupt(f"simulated kill in {function}")
        calls.append(None)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, function, dies)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(runner.study_config(**TINY), tmp_path, progress=False, data=data)
    monkeypatch.setattr(runner, function, real)
    return runner.run_study(runner.study_config(**TINY), tmp_path, progress=False, data=data)


def test_interrupted_run_resumes_to_identical_results(finished, data, tmp_path, monkeypatch):
    resumed = _killed_then_resumed(monkeypatch, tmp_path, data, "_evaluate_unit", survives=1)
    # fold 0's checkpoints were kept: only fold 1 (never reached) is trained
    assert resumed.units_skipped == 1 and resumed.models_trained == 2
    assert filecmp.cmp(tmp_path / "results.csv", _reference(finished), shallow=False)


def test_kill_during_training_loses_only_the_model_in_training(finished, data, tmp_path,
                                                                 monkeypatch):
    """On CPU every model is checkpointed as soon as it is trained."""
    if runner.grid_strategy() != "sequential":
        pytest.skip("vmapped grids are trained (and lost) as a whole")
    resumed = _killed_then_resumed(monkeypatch, tmp_path, data, "save_checkpoint", survives=1)
    assert resumed.models_trained == 3  # of 4: the first one was kept
    assert filecmp.cmp(tmp_path / "results.csv", _reference(finished), shallow=False)


def test_adding_a_method_evaluates_only_it(finished, data):
    out, _ = finished
    more = dict(TINY, methods=("gradient", "lrp"))
    result = runner.run_study(runner.study_config(**more), out, progress=False, data=data)
    assert result.models_trained == 0 and result.units_evaluated == 4
    import pandas as pd

    assert "lrp" in set(pd.read_csv(out / "results.csv")["method"])


def test_other_configuration_is_refused(finished, data):
    out, _ = finished
    with pytest.raises(ConfigMismatchError, match="epochs"):
        runner.run_study(runner.study_config(**dict(TINY, epochs=3)), out, progress=False, data=data)


@pytest.mark.parametrize("option, match", [
    (dict(methods=("gradient", "magic")), "unknown methods"),
    (dict(groups=("B7",)), "unknown groups"),
    (dict(dataset="mnist"), "unknown dataset"),
    (dict(width="huge"), "unknown width"),
    (dict(folds=1), "folds"),
    (dict(colour="red"), "unknown study options"),
])
def test_bad_options(option, match):
    with pytest.raises(ValueError, match=match):
        runner.study_config(**option)


def test_every_named_method_is_a_method():
    import jaxattr as ja

    assert set(runner.PAPER_METHODS) <= set(runner.METHODS)
    assert all(isinstance(m, ja.Method) for m in runner.METHODS.values())
    assert np.all([hash(m) == hash(m) for m in runner.METHODS.values()])


def test_small_images_train_with_the_im2col_convolution_on_cpu():
    import jax

    from jaxattr.models.conv import patches_conv

    model = runner.PaperCNN()
    small = runner._fast_model(model, (8, 8, 1))
    large = runner._fast_model(model, (32, 32, 3))
    assert large is model
    if jax.default_backend() == "cpu":
        assert small.conv_general_dilated is patches_conv


def test_models_to_train_counts_missing_checkpoints(finished, tmp_path):
    from jaxattr.study.store import ResultsStore

    out, _ = finished
    config = runner.study_config(**TINY)
    assert runner._models_to_train(ResultsStore(out, config), [0, 1]) == 0
    assert runner._models_to_train(ResultsStore(tmp_path / "fresh", config), [0, 1]) == 4


def test_an_incomplete_checkpoint_directory_is_retrained(finished, data, tmp_path):
    """What a kill in the middle of a checkpoint write may leave: a directory without orbax's
    metadata. The rerun trains that unit again and overwrites it."""
    from jaxattr.study.store import ResultsStore

    config = runner.study_config(**TINY)
    store = ResultsStore(tmp_path, config)
    partial = store.checkpoint_dir(config.units()[0])
    partial.mkdir(parents=True)
    (partial / "half-written").write_bytes(b"\0" * 10)
    result = runner.run_study(config, tmp_path, progress=False, data=data)
    assert result.models_trained == 4
    assert filecmp.cmp(tmp_path / "results.csv", _reference(finished), shallow=False)
