"""The benchmark scripts run (tiny sizes) and print the JSON lines they promise, so that they do
not rot between the sessions that read their numbers."""

import contextlib
import importlib
import io
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _run(name, argv):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their shared _timing module
    try:
        module = importlib.import_module(name)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            module.main(argv)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def test_attribution_benchmark_reports_time_and_flops(tmp_path):
    rows = _run("attribution", ["--batch", "2", "--size", "8", "--repeats", "1",
                                "--methods", "gradient", "lrp.epsilon_gamma_box",
                                "--grad-params", "lrp.epsilon_gamma_box", "--overhead-repeats", "3"])
    by_what = {r["what"]: r for r in rows}
    assert list(by_what) == ["forward", "jax.grad", "jax.grad+options", "gradient",
                             "lrp.epsilon_gamma_box", "grad_params.lrp.epsilon_gamma_box",
                             "call_overhead"]
    assert by_what["call_overhead"]["overhead_ratio"] > 0
    assert by_what["jax.grad"]["flops_vs_gradient"] == 1.0
    assert by_what["gradient"]["flops_vs_gradient"] == pytest.approx(1.0, abs=0.05)
    # γ: one extra convolution and one extra transposed one per layer, not two and two
    assert 1.5 < by_what["lrp.epsilon_gamma_box"]["flops_vs_gradient"] < 2.2
    assert all(r["seconds"] > 0 and r["cost_vs_tuned_gradient"] > 0 for r in rows[:-1])
    # the parameter gradient of an explanation, against the explanation alone (issue #20)
    second = by_what["grad_params.lrp.epsilon_gamma_box"]
    assert second["ratio_to_explanation"] > 0 and len(second["ratio_to_explanation_iqr"]) == 2
    assert second["flops_vs_explanation"] > 1.5
    # and its chart
    jsonl, png = tmp_path / "attribution.jsonl", tmp_path / "costs.png"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _run("plot_costs", [str(jsonl), str(png)])
    assert png.stat().st_size > 10_000


def test_aopc_benchmark_runs():
    rows = _run("aopc", ["--batch", "2", "--steps", "3", "--repeats", "1"])
    assert [r["what"] for r in rows] == ["forward", "aopc_3"]
    assert rows[1]["floor_ratio"] > 0


def test_training_benchmark_runs():
    rows = _run("training", ["--model", "small", "--epochs", "1", "--conv", "patches",
                             "--no-grid"])
    assert rows and all(r["examples_per_s"] > 0 for r in rows), rows


def test_gpu_script_runs_every_section_at_small_sizes(tmp_path):
    """``SMALL=1 bash benchmarks/gpu.sh OUTDIR`` on CPU: every section runs (or says why it is
    skipped) and its JSON lines land in one folder, tagged with their section."""
    import os
    import subprocess

    out = tmp_path / "gpu"
    env = {**os.environ, "SMALL": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]
    ran = {s["section"] for s in status if s["rc"] is not None}
    assert {"attribution", "aopc", "training", "precision", "study"} <= ran
    assert all(s["rc"] == 0 for s in status if s["rc"] is not None), status
    skipped = {s["section"]: s["note"] for s in status if s["rc"] is None}
    assert set(skipped) <= {"peers", "study_fold0", "tests"}
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "not installed" in skipped["peers"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by = {}
    for row in rows:
        by.setdefault(row["section"], []).append(row)
    assert by["env"][0]["backend"] == "cpu"
    assert {r["what"] for r in by["attribution"]} >= {"forward", "gradient"}
    assert all(r["precision"] == "float32" for r in by["attribution"] if r["what"] != "call_overhead")
    assert {r["what"] for r in by["aopc"]} == {"forward", "aopc_3"}
    assert by["training"][0]["precision"] == "bfloat16" and by["training"][0]["examples_per_s"] > 0
    errors = {r["precision"]: r["rel_max_error"] for r in by["precision"]}
    assert set(errors) == {"float32", "fast"} and max(errors.values()) < 1e-5  # CPU: float32 both
    assert by["study"][0]["rc"] == 0


def test_zoo_benchmark_runs():
    rows = _run("zoo", ["--small", "--repeats", "1", "--models", "gru", "vit_mean_nnx",
                        "--methods", "gradient", "guided_backprop", "lrp.epsilon_plus"])
    timed = [r for r in rows if "seconds" in r]
    common = ("jax.grad", "jax.grad.defaults", "gradient", "guided_backprop", "gradient@jit",
              "guided_backprop@jit")
    methods = common + ("lrp.epsilon_plus", "lrp.epsilon_plus@jit")
    assert {(r["model"], r["method"]) for r in timed} == {
        (m, w) for m in ("gru", "vit_mean_nnx") for w in methods}
    assert all(r["ratio_to_jax_grad"] > 0 and r["images_per_s"] > 0 for r in timed)
    # LRP applies to both now: a scan's body and attention have their rules (issues #19, #21)
    assert not [r for r in rows if r.get("applies") is False]


def test_peers_benchmark_lxt_rows_run():
    """``peers.py --only attn_lrp cp_lrp`` at a tiny ViT: both sides checked equal (at ε 1e-10,
    where LXT's and jaxattr's stabilisers agree) and timed side by side."""
    for name in ("torch", "torchvision", "captum", "zennit", "quantus", "lxt.explicit.functional"):
        pytest.importorskip(name, reason="the peers benchmark needs the [peers] extra and lxt")
    rows = _run("peers", ["--only", "attn_lrp", "cp_lrp", "--batch", "2", "--repeats", "1",
                          "--vit-batch", "2", "--vit-image", "8", "--vit-dim", "8",
                          "--vit-heads", "2", "--vit-mlp", "8", "--vit-blocks", "1",
                          "--vit-repeats", "2"])
    # each row also times the model's plain jax.grad in the same rounds: AttnLRP's bound
    assert [(r["tool"], r["what"]) for r in rows] == [
        ("jaxattr", "attn_lrp"), ("jax", "attn_lrp"), ("lxt", "attn_lrp"),
        ("jaxattr", "cp_lrp"), ("jax", "cp_lrp"), ("lxt", "cp_lrp")]
    floors = [r for r in rows if r["tool"] == "jax"]
    assert all(r["vs_peer"] > 0 and "reference" in r for r in floors), floors
    rows = [r for r in rows if r["tool"] != "jax"]
    ours = [r for r in rows if r["tool"] == "jaxattr"]
    assert all(r["max_rel_diff"] < 1e-4 and r["vs_peer"] > 0 and r["images_per_s"] > 0
               for r in ours), ours
    assert all(r["peer_setting"]["rules"] == "lxt.explicit.functional" for r in ours)
    # LXT at the faster of 1 and --threads (default 2) torch threads, chosen before the race
    for ours_row, peer in zip(rows[::2], rows[1::2]):
        assert set(peer["threads_seconds"]) == {"1", "2"}
        assert ours_row["peer_setting"]["threads"] == peer["threads"] == int(
            min(peer["threads_seconds"], key=peer["threads_seconds"].get))
