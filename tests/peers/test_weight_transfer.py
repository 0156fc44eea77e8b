"""The Flax models and their torch twins (``_torch_nets``) compute the same function."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
pytest.importorskip("zennit", reason="peer cross-checks need the [peers] extra (zennit)")

import jax  # noqa: E402

import _torch_nets as T  # noqa: E402


@pytest.mark.parametrize("net", T.NETS)
def test_forward_float64(net):
    with jax.enable_x64(True):
        pair = T.make_pair(net)
        x = pair.inputs(3, seed=1)
        got = T.jax_logits(pair, x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, T.torch_logits(pair, x), rtol=1e-12, atol=1e-14)


def test_forward_full_paper_cnn_float32():
    """The benchmark's network: full-size PaperCNN, 32×32×3, float32."""
    pair = T.make_pair("paper_cnn_full", dtype=np.float32)
    x = pair.inputs(2, seed=1, dtype=np.float32)
    np.testing.assert_allclose(T.jax_logits(pair, x), T.torch_logits(pair, x), rtol=1e-4, atol=1e-5)


def test_flatten_rows_reorders_nhwc_to_nchw():
    """Feature (h, w, c) of an NHWC flatten lands on the NCHW-flatten row of the same feature."""
    h, w, c = 2, 3, 4
    kernel = np.arange(h * w * c * 2).reshape(h * w * c, 2)
    out = T.flatten_rows(kernel, h, w, c)
    for i in range(h):
        for j in range(w):
            for k in range(c):
                np.testing.assert_array_equal(out[k * h * w + i * w + j], kernel[(i * w + j) * c + k])
