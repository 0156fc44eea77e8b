"""NHWC images give the same numbers as before regions were generalised to any layout.

``data/nhwc_golden.npz`` was written by this file (``python tests/evaluation/test_nhwc_unchanged.py``)
on the code of commit b80490e, when the evaluation took NHWC images only. The perturbed inputs
are compared bit for bit on every backend (they are selections, no arithmetic on the values
besides the replacement, which is computed the same way); the curves bit for bit on CPU,
to float32 precision elsewhere.
"""
import os
import pathlib
import sys

import numpy as np
import pytest

GOLDEN = pathlib.Path(__file__).parent / "data" / "nhwc_golden.npz"


def cases():
    import jax
    import jax.numpy as jnp

    from jaxattr.evaluation import confidence_drop, evaluate, perturbation_curve, perturbed_inputs

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import conftest as c

    x = c.uniform(0, (6, 9, 7, 3))  # the `images` fixture
    params = c.TINY_CNN.init(jax.random.key(1), x[:1])  # the `cnn_params` fixture
    rel = c.integer_relevance(5, x.shape)
    key = jax.random.key(7)
    out = {}
    for name in ("zeros", "mean", "uniform", "blur"):
        kw = dict(region=3, steps=5, perturbation=name, key=key)
        out[f"inputs_{name}"] = perturbed_inputs(x, rel, **kw)
        out[f"curve_{name}"] = perturbation_curve(c.cnn_apply, params, x, None, rel, progress=False, **kw)
    for order in ("lerf", "random"):
        out[f"curve_{order}"] = perturbation_curve(c.cnn_apply, params, x, None, rel, region=4, steps=6, order=order,
                                                   key=key, progress=False)
    out["inputs_random"] = perturbed_inputs(x, rel, region=4, steps=6, order="random", key=key)
    out["curve_r1_logit"] = perturbation_curve(c.cnn_apply, params, x, None, rel, region=1, steps=9, score="logit",
                                               perturbation="zeros", progress=False)
    out["curve_r2_accuracy_chunked"] = perturbation_curve(c.cnn_apply, params, x, jnp.arange(6) % 5, rel, region=2,
                                                          steps=7, score="accuracy", chunk_size=10, key=key,
                                                          progress=False)
    out["drop"] = confidence_drop(c.cnn_apply, params, x, None, rel, key=key, progress=False)
    table, curves = evaluate(c.cnn_apply, params, x, None, {"rel": rel, "neg": -rel}, key=key, return_curves=True,
                             progress=False)
    out["evaluate_table"] = table[["aopc"] + [col for col in table.columns if col.startswith("drop_")]].to_numpy()
    out.update({f"evaluate_curve_{k}": v for k, v in curves.items()})
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.filterwarnings("ignore::jaxattr.evaluation.regions.RepeatedStepsWarning")  # evaluate's 63 regions, 10 steps
def test_nhwc_results_are_unchanged():
    import jax

    golden = np.load(GOLDEN)
    got = cases()
    assert sorted(got) == sorted(golden.files)
    for name in golden.files:
        if name.startswith("inputs_") or jax.default_backend() == "cpu":
            np.testing.assert_array_equal(got[name], golden[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], golden[name], rtol=1e-5, atol=1e-6, err_msg=name)


if __name__ == "__main__":
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **cases())
    print(f"wrote {GOLDEN}")
