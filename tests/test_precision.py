"""The precision policy (jaxattr.precision) and backend-aware programs.

The compiled HLO of every method carries the requested precision on every convolution and
``dot_general``; a user's ``jax.default_matmul_precision`` is respected when no precision is
given; a precision never reuses another's program; the CPU fast paths are CPU-only."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.engine import fast
from jaxattr.engine.trace import trace
from jaxattr.evaluation import perturbation_curve
from jaxattr.evaluation.aopc import _block_sizes, _bounds
from jaxattr.models import small_paper_cnn

MODEL = small_paper_cnn(num_classes=3)
X = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
PARAMS = MODEL.init(jax.random.key(1), X)["params"]


def apply_fn(params, x):
    return MODEL.apply({"params": params}, x)


METHODS = {
    "gradient": ja.Gradient(), "gradient_x_input": ja.GradientXInput(),
    "integrated_gradients": ja.IntegratedGradients(steps=2), "smoothgrad": ja.SmoothGrad(samples=2),
    "guided_backprop": ja.GuidedBackprop(), "deconvnet": ja.DeconvNet(),
    "deep_taylor": ja.DeepTaylor(), "deeplift": ja.DeepLIFT(),
    "reveal_cancel": ja.DeepLIFT(rule="reveal_cancel"), "lrp.epsilon": ja.LRP(ja.rules.Epsilon(1e-6)),
    "lrp.epsilon_plus_flat": ja.LRP(ja.composites.epsilon_plus_flat()),
    "lrp.epsilon_gamma_box": ja.LRP(ja.composites.epsilon_gamma_box(0.0, 1.0)),
    "lrp.epsilon_alpha2_beta1": ja.LRP(ja.composites.epsilon_alpha2_beta1()),
}


def _precisions(hlo_text: str) -> list:
    """The precision of every convolution and dot_general in a lowered module's text."""
    ops = re.findall(r"stablehlo\.(?:convolution|dot_general)[^\n]*", hlo_text)
    assert ops, "no convolution or dot in the program"
    out = []
    for op in ops:  # "precision_config = [#stablehlo<precision HIGHEST>, …]" or "precision = [HIGHEST, …]"
        names = set(re.findall(r"\b(DEFAULT|HIGHEST|HIGH)\b", op)) or {"DEFAULT"}  # none printed: DEFAULT
        out.append(names.pop() if len(names) == 1 else "MIXED")
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_convolution_and_dot_carries_the_precision(name):
    for precision, want in (("float32", "HIGHEST"), ("fast", "DEFAULT")):
        explain = ja.explain(apply_fn, METHODS[name], precision=precision)
        text = jax.jit(lambda p, x: explain(p, x, key=jax.random.key(0))
                       if METHODS[name].needs_key else explain(p, x)).lower(PARAMS, X).as_text()
        got = _precisions(text)
        assert set(got) == {want}, (name, precision, got)


def _recording():
    """An apply_fn that records the matmul precision it is traced under."""
    seen = []

    def f(params, x):
        seen.append(jax.config.jax_default_matmul_precision)
        return apply_fn(params, x)

    return f, seen


def test_top_level_program_is_traced_under_the_precision_and_cached_per_precision():
    f, seen = _recording()
    a = ja.attribute(f, PARAMS, X, precision="float32")
    assert set(seen) == {"highest"}
    seen.clear()
    ja.attribute(f, PARAMS, X, precision="float32")
    assert not seen  # compiled once
    b = ja.attribute(f, PARAMS, X, precision="fast")
    assert seen and set(seen) == {"default"}  # a new program, not the float32 one
    seen.clear()
    ja.attribute(f, PARAMS, X, precision="float32")
    assert not seen  # and float32's program is still there
    # on CPU both are float32 arithmetic: the same numbers
    np.testing.assert_array_equal(a, b)


def test_default_is_float32_and_a_users_context_is_respected():
    f, seen = _recording()
    ja.attribute(f, PARAMS, X)
    assert set(seen) == {"highest"}
    seen.clear()
    with jax.default_matmul_precision("tensorfloat32"):
        ja.attribute(f, PARAMS, X)  # precision=None: the user's setting
        assert set(seen) == {"tensorfloat32"}
        g, seen_g = _recording()
        ja.attribute(g, PARAMS, X, precision="float32")  # an explicit name wins
        assert set(seen_g) == {"highest"}
    assert ja.precision.resolve(None) == "float32"


def test_unknown_precision_is_a_value_error_listing_the_names():
    for call in (lambda: ja.explain(apply_fn, ja.Gradient(), precision="half"),
                 lambda: ja.attribute(apply_fn, PARAMS, X, precision="tf32"),
                 lambda: perturbation_curve(apply_fn, PARAMS, X, None, X, region=2, steps=2,
                                            precision="float16"),
                 lambda: ja.evaluation.evaluate(apply_fn, PARAMS, X, None, {"g": X},
                                                precision=64)):
        with pytest.raises(ValueError, match="'float32', 'fast', 'bfloat16'"):
            call()


def test_perturbation_forwards_run_under_the_precision():
    f, seen = _recording()
    rel = jnp.abs(X)
    curve = perturbation_curve(f, PARAMS, X, None, rel, region=2, steps=3, precision="fast",
                               chunk_size=5, progress=False)
    assert seen and set(seen) == {"default"}
    seen.clear()
    exact = perturbation_curve(f, PARAMS, X, None, rel, region=2, steps=3, chunk_size=5,
                               progress=False)
    assert seen and set(seen) == {"highest"}
    np.testing.assert_array_equal(curve, exact)  # CPU: the same arithmetic


def test_chunks_are_balanced():
    # batch 256 × 17 images at chunk 4096: two blocks of 9 and 8 counts, not 16 + 1
    padded, images, per = _block_sizes(256, 17, 4096, 1)
    assert (padded, images) == (256, 256)
    assert _bounds(17, per) == [(0, 9), (9, 17)]
    for total, most, multiple in ((101, 8, 1), (7, 3, 1), (12, 8, 4), (40, 12, 4), (5, 5, 1)):
        bounds = _bounds(total, most, multiple)
        sizes = [b - a for a, b in bounds]
        assert bounds[0][0] == 0 and bounds[-1][1] == total
        assert all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
        assert len(bounds) == -(-(total // multiple) // max(most // multiple, 1))  # fewest blocks
        assert max(sizes) <= max(most, multiple) and max(sizes) - min(sizes) <= multiple
        assert all(s % multiple == 0 for s in sizes)


def test_cpu_fast_paths_are_off_on_other_backends(monkeypatch):
    x = jnp.ones((2, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 4))

    def f(w, x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    on_cpu = trace(f, w, x)
    assert {n.prim for n in on_cpu.nodes if n.impl is not None} == {
        "conv_general_dilated", "reduce_window_max"}
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda: backend)
        assert all(n.impl is None for n in trace(f, w, x).nodes)
        assert ja.xla.backward_options() == {}
    for node in on_cpu.nodes:
        avals = [on_cpu.avals.get(a) if isinstance(a, int) else None for a in node.ins]
        assert fast.fast_impl(node, avals, backend="cuda") is None


def test_study_precision_option():
    from jaxattr.cli import build_parser
    from jaxattr.study.runner import _study_precision, study_config

    assert "precision" not in study_config().training  # old study folders resume unchanged
    assert _study_precision(study_config()) == "float32"
    assert _study_precision(study_config(precision="bfloat16")) == "bfloat16"
    with pytest.raises(ValueError, match="'float32', 'fast', 'bfloat16'"):
        study_config(precision="half")
    args = build_parser().parse_args(["study", "--out", "x", "--precision", "fast"])
    assert args.precision == "fast"
