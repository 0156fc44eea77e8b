"""The DeepLIFT paper's experiments: weight normalisations (eq. 21, 22), the experiment script's
functions at tiny size, and the notebook (slow: executed with nbclient)."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scripts  # noqa: E402  (tests/ is on sys.path, see conftest.py)

import jaxattr as ja
from jaxattr.data.genomics import simulate
from jaxattr.models.genomics_cnn import GenomicsCNN
from jaxattr.weight_norm import layer_paths, normalize_one_hot_weights, normalize_softmax_weights

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_experiment():
    return scripts.load("experiments/deeplift_genomics.py")


def _random_params(model, x, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(size=s.shape) * (0.3 if len(s.shape) == 1 else
                                                          1.5 / np.sqrt(np.prod(s.shape[:-1]))), dtype),
        shapes)


# ------------------------------------------------------------------------------ weight normalisation

def test_eq21_keeps_softmax_and_zeroes_shared_evidence():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params = {"params": {"hidden": {"kernel": jnp.asarray(rng.normal(size=(3, 5))),
                                        "bias": jnp.zeros(5)},
                             "out": {"kernel": jnp.asarray(rng.normal(size=(5, 4))),
                                     "bias": jnp.asarray(rng.normal(size=4))}}}
        # unit 0 of the hidden layer pushes every class equally
        k = params["params"]["out"]["kernel"].at[0].set(0.7)
        params["params"]["out"]["kernel"] = k

        def f(p, x):
            h = jax.nn.relu(x @ p["params"]["hidden"]["kernel"] + p["params"]["hidden"]["bias"])
            return h @ p["params"]["out"]["kernel"] + p["params"]["out"]["bias"]

        normed = normalize_softmax_weights(params)
        assert layer_paths(params)[-1] == ("params", "out")
        np.testing.assert_allclose(np.asarray(normed["params"]["out"]["kernel"].sum(-1)), 0.0, atol=1e-12)
        np.testing.assert_allclose(float(normed["params"]["out"]["bias"].sum()), 0.0, atol=1e-12)
        assert normed["params"]["hidden"] is params["params"]["hidden"]  # other layers shared
        x = jnp.asarray(rng.normal(size=(6, 3)))
        np.testing.assert_allclose(np.asarray(jax.nn.softmax(f(normed, x))),
                                   np.asarray(jax.nn.softmax(f(params, x))), rtol=1e-12, atol=1e-14)
        assert not np.allclose(np.asarray(f(normed, x)), np.asarray(f(params, x)))
        # input 0 reaches the logits only through hidden unit 0's weight row, which is now 0
        np.testing.assert_allclose(np.asarray(normed["params"]["out"]["kernel"][0]), 0.0, atol=1e-12)


def test_eq22_keeps_logits_on_one_hot_input():
    model = GenomicsCNN(n_tasks=2)
    with jax.enable_x64(True):
        x = jnp.asarray(simulate(6, seed=2).x, jnp.float64)
        params = _random_params(model, x, dtype=jnp.float64)
        normed = normalize_one_hot_weights(params)  # the first layer: the conv
        kernel = normed["params"]["conv"]["kernel"]
        np.testing.assert_allclose(np.asarray(kernel.mean(axis=1)), 0.0, atol=1e-12)
        f = jax.jit(model.apply)
        np.testing.assert_allclose(np.asarray(f(normed, x)), np.asarray(f(params, x)), rtol=1e-10, atol=1e-12)
        soft = x * 0.9  # channels no longer sum to 1: the output changes
        assert not np.allclose(np.asarray(f(normed, soft)), np.asarray(f(params, soft)))


def test_eq22_dense_layer_on_flattened_one_hot():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(10 * 4, 3))),
                            "bias": jnp.asarray(rng.normal(size=3))}}
        x = jnp.asarray(np.eye(4)[rng.integers(0, 4, size=(5, 10))].reshape(5, 40))
        f = lambda p, v: v @ p["dense"]["kernel"] + p["dense"]["bias"]
        normed = normalize_one_hot_weights(params, "dense", channels=4)
        np.testing.assert_allclose(np.asarray(f(normed, x)), np.asarray(f(params, x)), rtol=1e-12)


def test_eq22_zero_reference_equals_uniform_reference():
    """With one-hot inputs, eq. 22 + the zero reference gives the per-position scores of the
    uniform (0.25) reference on the raw weights (the experiment relies on this)."""
    model = GenomicsCNN()
    x = jnp.asarray(simulate(3, seed=5).x)
    params = _random_params(model, x, seed=3)
    t = jnp.zeros(3, jnp.int32)
    a = ja.attribute(model.apply, normalize_one_hot_weights(params, "conv"), x, t, ja.DeepLIFT(0.0))
    b = ja.attribute(model.apply, params, x, t, ja.DeepLIFT(0.25))
    np.testing.assert_allclose(np.asarray(a.sum(-1)), np.asarray(b.sum(-1)), rtol=1e-4, atol=1e-5)


def test_weight_norm_errors():
    params = {"a": {"kernel": jnp.ones((3, 4, 2))}, "b": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}}
    with pytest.raises(ValueError, match="no 'bias' leaf"):
        normalize_one_hot_weights(params)
    with pytest.raises(ValueError, match="matches 0 layers"):
        normalize_softmax_weights(params, "c")
    with pytest.raises(ValueError, match="not a layer"):
        normalize_softmax_weights(params, ("x", "b"))
    with pytest.raises(ValueError, match="pass channels"):
        normalize_one_hot_weights(params, "b")
    with pytest.raises(ValueError, match="cannot be split"):
        normalize_one_hot_weights(params, "b", channels=3)
    with pytest.raises(ValueError, match="no layer with a 'kernel'"):
        normalize_softmax_weights({"w": jnp.ones(3)})


# ------------------------------------------------------------------------------ experiment script

def test_fig1_toy_and_motif_auroc():
    E = _load_experiment()
    fig1 = E.fig1_toy()
    np.testing.assert_allclose(fig1["deeplift"], [-0.4 / 3, -0.8 / 3], rtol=1e-6)
    assert fig1["gradient"] == [0.0, 0.0] and abs(fig1["deeplift_sum"] + 0.4) < 1e-6
    mask = np.zeros((2, 10, 2), bool)
    mask[:, 2:4, 0], mask[:, 6:8, 1] = True, True
    scores = np.zeros((2, 10))
    scores[:, 2:4] = 1.0  # GATA found, TAL1 ranked with the background
    out = E.motif_auroc(scores, mask)
    assert out["GATA"] == 1.0 and out["TAL1"] == 0.5


def test_pipeline_tiny():
    """Training, auROC inputs and motif recovery run end to end (tiny, so untrained)."""
    E = _load_experiment()
    s = dataclasses.replace(E.SMALL, n_train=256, n_val=64, n_test=96, epochs=1, batch_size=64)
    model, params, (train, val, test), history, _ = E.train_genomics(s)
    assert len(history["val_loss"]) == 1 and train.x.shape == (256, 200, 4)
    assert val.x.shape == (64, 200, 4) and test.x.shape == (96, 200, 4)
    # score every sequence: all "positive", and a logit pushed above 0
    test = test._replace(labels=np.ones_like(test.labels))
    params["params"]["out"]["bias"] = params["params"]["out"]["bias"] + 100.0
    methods = {"deeplift_zero_eq22": E.genomics_methods(params)["deeplift_zero_eq22"]}
    rec = E.motif_recovery(model, params, test, methods=methods)
    assert rec["n_sequences"] == 96 and set(rec) == {"n_sequences", "deeplift_zero_eq22"}
    assert 0.0 <= rec["deeplift_zero_eq22"]["GATA"] <= 1.0


@pytest.mark.slow
def test_fig2_grid(tmp_path):
    """The Fig. 2 grid (≈ 12 s: a CNN trained for one epoch, three methods compiled); the
    notebook test runs it too."""
    E = _load_experiment()
    out = E.fig2_grid(tmp_path / "fig2.png", epochs=1, n_images=2)
    assert (tmp_path / "fig2.png").stat().st_size > 1000 and 0.0 <= out["digits_test_accuracy"] <= 1.0
    assert out["lrp0_vs_gradient_x_input"]["relative"] < 1e-5  # §3.4 on a (briefly) trained ReLU CNN
    assert set(out["deletion_aopc"]) >= {"|gradient|", "gradient_x_input", "deeplift", "random"}


# ------------------------------------------------------------------------------ notebook

@pytest.mark.slow
def test_notebook_runs_small():
    """``notebooks/deeplift_paper.ipynb`` end to end with ``SMALL = True`` (≈ 1.5 min)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "deeplift_paper.ipynb", as_version=4)
    assert "SMALL = True" in nb.cells[1].source
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "test auROC" in text and "max |Σ C − Δ logit|" in text
