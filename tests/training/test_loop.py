import jax
import numpy as np
import pytest

from jaxattr.training import (
    Config,
    evaluate,
    group_mask,
    l2_penalty,
    load_checkpoint,
    save_checkpoint,
    train,
    train_grid,
)

EPOCHS = 30


@pytest.fixture(scope="module")
def trained(model, digits_split, settings):
    """A configuration that stops early with these settings."""
    return train(model, *digits_split, decay=5e-2, group="D", epochs=EPOCHS, seed=0, **settings)


def test_history_shapes_and_early_stop(trained, settings):
    _, history = trained
    n = int(history.epochs_trained)
    assert history.val_loss.shape == history.train_loss.shape == history.val_accuracy.shape == (n,)
    assert n < EPOCHS, "this configuration is expected to stop early"
    # stopped exactly `patience` epochs after its best epoch
    assert n == int(history.best_epoch) + 1 + settings["patience"]
    assert np.all(np.isfinite(history.val_loss))
    assert np.all((history.val_accuracy >= 0) & (history.val_accuracy <= 1))


def test_returns_the_best_epochs_parameters(model, digits_split, trained):
    params, history = trained
    best = int(history.best_epoch)
    assert best == int(np.argmin(history.val_loss))
    assert float(history.best_val_loss) == pytest.approx(float(history.val_loss[best]))
    # the returned parameters reproduce the best epoch's monitored loss:
    # cross-entropy + λ Σ w² over the group's kernels (coupled, Keras-style)
    _, _, x_val, y_val = digits_split
    ce, accuracy = evaluate(model, params, x_val, y_val)
    monitored = ce + float(l2_penalty(params, 5e-2, group_mask(params, "D")))
    assert monitored == pytest.approx(float(history.best_val_loss), rel=1e-5)
    assert accuracy == pytest.approx(float(history.val_accuracy[best]), abs=1e-6)
    assert monitored < history.val_loss[-1]


def test_same_seed_same_result_and_checkpoint(model, digits_split, settings, trained, tmp_path):
    params, history = train(
        model, *digits_split, decay=5e-2, group="D", epochs=EPOCHS, seed=0,
        checkpoint_dir=tmp_path / "run", **settings,
    )
    jax.tree.map(np.testing.assert_array_equal, params, trained[0])
    np.testing.assert_array_equal(history.val_loss, trained[1].val_loss)
    restored, restored_history = load_checkpoint(tmp_path / "run")
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    for field in history._fields:
        np.testing.assert_array_equal(getattr(restored_history, field), getattr(history, field))


def test_checkpoint_without_history_and_no_overwrite(tmp_path, params):
    save_checkpoint(tmp_path / "c", params)
    restored, history = load_checkpoint(tmp_path / "c")
    assert history is None
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    with pytest.raises(ValueError, match="already exists"):
        save_checkpoint(tmp_path / "c", params)
    save_checkpoint(tmp_path / "c", params, overwrite=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing")


def test_evaluate_returns_loss_and_accuracy(model, params, digits_split):
    _, _, x_val, y_val = digits_split
    loss, accuracy = evaluate(model, params, x_val, y_val, batch_size=50)
    assert loss == pytest.approx(np.log(10), rel=0.1)  # untrained: about uniform
    assert 0.0 <= accuracy <= 1.0


# ----------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def data(digits_split):
    return digits_split


@pytest.mark.parametrize("fn", ["train", "grid"])
@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: (d[0][:, :, :, 0].reshape(-1), *d[1:]), ValueError,
         r"x_train must have shape \(examples, \.\.\.\).*got shape \(4096,\)"),
        (lambda d: (d[0].astype(np.int32), *d[1:]), TypeError,
         "x_train must have a floating dtype.*got int32"),
        (lambda d: (d[0], d[1].astype(np.float32), *d[2:]), TypeError,
         "y_train must have an integer dtype.*got float32"),
        (lambda d: (d[0], d[1][:-1], *d[2:]), ValueError,
         "x_train and y_train must have the same number of examples, got 64 and 63"),
        (lambda d: (*d[:2], d[2][:, :4], d[3]), ValueError,
         r"x_val examples must have the shape of x_train examples \(8, 8, 1\), got \(4, 8, 1\)"),
        (lambda d: (*d[:2], d[2], d[3][:, None]), ValueError,
         r"y_val must be 1-D \(examples,\), got shape \(128, 1\)"),
        (lambda d: (d[0], d[1] + 5, *d[2:]), ValueError,
         r"y_train must hold class indices in \[0, 10\).*got values in \[5, 14\]"),
        (lambda d: ([[0.0]], *d[1:]), TypeError, "x_train must be an array.*got list"),
    ],
)
def test_bad_data_is_rejected_naming_the_argument(model, data, fn, change, error, message):
    bad = change(data)
    with pytest.raises(error, match=message):
        if fn == "train":
            train(model, *bad, epochs=1, progress=False)
        else:
            train_grid(model, [Config(0.0)], *bad, epochs=1, progress=False)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(group="C"), ValueError, r"group must be one of \('B1'.*got 'C'"),
        (dict(decay=-1e-3), ValueError, "Config.decay must be a finite number >= 0, got -0.001"),
        (dict(epochs=0), ValueError, "epochs must be an integer >= 1, got 0"),
        (dict(batch_size=2.5), ValueError, "batch_size must be an integer >= 1, got 2.5"),
        (dict(patience=0), ValueError, "patience must be an integer >= 1, got 0"),
        (dict(seed="a"), TypeError, "seed must be an int, got 'a'"),
    ],
)
def test_bad_settings_are_rejected(model, data, kwargs, error, message):
    with pytest.raises(error, match=message):
        train(model, *data, **{"progress": False, **kwargs})


def test_model_must_be_a_linen_module(data):
    with pytest.raises(TypeError, match="model must be a flax.linen Module, got function"):
        train(lambda p, x: x, *data, progress=False)


@pytest.mark.parametrize(
    "configs, error, message",
    [
        ([], ValueError, "configs must hold at least one Config, got none"),
        (Config(0.0), TypeError, "configs must be a sequence of Config"),
        ([(1e-3, "A")], TypeError, r"configs\[0\] must be a Config\(decay, group\), got \(0.001, 'A'\)"),
        ([Config(1e-3, "X")], ValueError, "group must be one of"),
    ],
)
def test_bad_configs_are_rejected(model, data, configs, error, message):
    with pytest.raises(error, match=message):
        train_grid(model, configs, *data, progress=False)
