"""Bar chart of what each attribution method costs, from ``benchmarks/attribution.py``'s JSON
lines: time relative to the gradient (``cost_vs_tuned_gradient``) beside XLA's FLOP count
relative to the gradient (``flops_vs_gradient``), the arithmetic a rule cannot avoid.

    python benchmarks/attribution.py --repeats 8 > runs/attribution.jsonl
    python benchmarks/plot_costs.py runs/attribution.jsonl docs/method_costs.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: rows of the benchmark that are references, not methods
REFERENCES = ("forward", "jax.grad", "jax.grad+options")


def plot(rows: list[dict], out: str, cap: float = 5.0) -> None:
    """Horizontal bars per method, time and FLOPs over the gradient's; bars beyond ``cap`` are
    cut and labelled with their value."""
    # explanations, not their parameter gradients (``grad_params.*``: second-order programs) nor
    # rows without FLOPs (``call_overhead``)
    rows = [r for r in rows if r["what"] not in REFERENCES and "flops_vs_gradient" in r
            and not r["what"].startswith("grad_params.")]
    rows.sort(key=lambda r: r["flops_vs_gradient"])
    names = [r["what"] for r in rows]
    time = np.array([r["cost_vs_tuned_gradient"] for r in rows])
    flops = np.array([r["flops_vs_gradient"] for r in rows])
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.2))
    ax.barh(y + 0.2, np.minimum(flops, cap), 0.4, label="FLOPs / gradient (XLA cost analysis)",
            color="#9bb7d4")
    # quartiles of the per-round ratio, when the run reports them
    iqr = np.array([r.get("cost_vs_tuned_gradient_iqr", [t, t]) for r, t in zip(rows, time)])
    err = np.clip(np.abs(np.minimum(iqr, cap) - np.minimum(time, cap)[:, None]).T, 0, None)
    ax.barh(y - 0.2, np.minimum(time, cap), 0.4, xerr=err, error_kw={"lw": 0.8, "capsize": 2},
            label="time / gradient (this machine; quartiles over rounds)", color="#1f4e79")
    for i, (t, f, hi) in enumerate(zip(time, flops, iqr[:, 1])):
        for value, end, dy in ((f, f, 0.2), (t, max(t, hi), -0.2)):
            ax.text(min(end, cap) + 0.05, i + dy, f"{value:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(1.3, color="#c0392b", lw=0.8, ls="--", label="1.3× goal")
    ax.set_yticks(y, names)
    ax.set_xlim(0, cap + 0.6)
    ax.set_xlabel("relative to the input gradient (jax.grad, same compiler options)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Paper CNN, batch {rows[0]['batch']}: cost of each method", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", help="output of benchmarks/attribution.py")
    parser.add_argument("out", help="PNG to write")
    args = parser.parse_args(argv)
    with open(args.jsonl) as f:
        rows = [json.loads(line) for line in f if line.startswith("{")]
    plot(rows, args.out)


if __name__ == "__main__":
    main()
