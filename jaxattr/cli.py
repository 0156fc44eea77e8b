"""``jaxattr`` command line: ``jaxattr study`` reproduces Amorim et al. 2020; ``jaxattr report``
rewrites a study folder's report.

    jaxattr study --quick --out runs/quick          # a few minutes on a 2-core CPU
    jaxattr study --out runs/digits                 # the paper's protocol on scikit-learn digits
    jaxattr study --dataset cifar10 --out runs/c10  # the paper's data (pip install 'jaxattr[cifar]')
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

#: What ``jaxattr --help`` shows (plain text: argparse prints it as written).
DESCRIPTION = ("jaxattr: 'study' reproduces Amorim et al. 2020 (train, explain, evaluate, report);\n"
               "'report' rewrites a study folder's report.")
EPILOG = """examples:
  jaxattr study --quick --out runs/quick          # a few minutes on a 2-core CPU
  jaxattr study --out runs/digits                 # the paper's protocol on scikit-learn digits
  jaxattr study --dataset cifar10 --out runs/c10  # the paper's data (pip install 'jaxattr[cifar]')
  jaxattr report runs/digits                      # rewrite report.md and figures/
  jaxattr study --quick --out /shared/q --coordinator host0:12355 --num-processes 2 --process-id 0
                                                  # one of 2 processes (README: many GPUs or hosts)"""

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def _floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _names(text: str) -> tuple:
    names = tuple(v for v in text.replace(",", " ").split() if v)
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected one or more names separated by commas, got {text!r} (omit the option for the default)")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def _listed(value: Any) -> str:
    """``("B1", "B2")`` -> ``B1,B2``; ``1e-3`` -> ``0.001``: as the option would be typed."""
    if isinstance(value, (tuple, list)):
        return ",".join(_listed(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    from .study.runner import DATASETS, DEFAULTS, METHODS, PAPER_METHODS, QUICK, WIDTHS

    d = {k: _listed(v) for k, v in DEFAULTS.items()}
    parser = argparse.ArgumentParser(prog="jaxattr", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    # No ArgumentDefaultsHelpFormatter: the options default to None (= "not given", so that
    # --quick and resumed studies can tell) and each help names the real default itself.
    s = sub.add_parser("study", help="train, explain, evaluate and report the regularisation study",
                       description="Train, explain, evaluate and report the regularisation study of "
                                   "Amorim et al. 2020. Every default is the paper's protocol.")
    s.add_argument("--dataset", choices=DATASETS, default=None, help=f"data set (default: {d['dataset']})")
    s.add_argument("--folds", type=int, default=None, help=f"cross-validation folds (default: {d['folds']})")
    s.add_argument("--decays", type=_floats, default=None,
                   help=f"L2 decays, comma-separated (default: {d['decays']})")
    s.add_argument("--groups", type=_names, default=None, help=f"layer groups (default: {d['groups']})")
    s.add_argument("--methods", type=_names, default=None,
                   help=f"methods, comma-separated; the random baseline is always added (default: "
                        f"{_listed(PAPER_METHODS)}); any of {', '.join(METHODS)}")
    s.add_argument("--epochs", type=_positive_int, default=None, help=f"maximum epochs (default: {d['epochs']})")
    s.add_argument("--patience", type=_positive_int, default=None,
                   help=f"early-stopping patience (default: {d['patience']})")
    s.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"training batch size (default: {d['batch_size']})")
    s.add_argument("--learning-rate", type=float, default=None,
                   help=f"Adam learning rate (default: {d['learning_rate']})")
    s.add_argument("--width", choices=list(WIDTHS), default=None, help=f"CNN width (default: {d['width']})")
    s.add_argument("--eval-size", type=_positive_int, default=None,
                   help="evaluate at most this many test images per fold (default: all of them)")
    s.add_argument("--region", type=_positive_int, default=None,
                   help=f"perturbed region side in pixels (default: {d['region']})")
    s.add_argument("--steps", type=_positive_int, default=None,
                   help=f"AOPC steps L (default: {d['steps']}, 10%% of the regions each)")
    s.add_argument("--perturbation", default=None, choices=("uniform", "zeros", "mean", "blur"),
                   help=f"fill of perturbed pixels (default: {d['perturbation']})")
    s.add_argument("--seed", type=int, default=None, help=f"random seed (default: {d['seed']})")
    s.add_argument("--precision", default=None, choices=("float32", "fast", "bfloat16"),
                   help="arithmetic of training, explanations and perturbation forwards: float32 "
                        "(exact, XLA 'highest'), fast (what the backend does unasked: TF32 on recent NVIDIA "
                        "GPUs) or bfloat16 (bfloat16 training with float32 master weights) "
                        f"(default: {d['precision']})")
    s.add_argument("--quick", action="store_true",
                   help="a small preset: " + ", ".join(f"{k}={_listed(v)}" for k, v in QUICK.items()))
    s.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    s.add_argument("--overwrite", action="store_true", help="delete an existing study in --out first")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    m = s.add_argument_group(
        "many processes (jax.distributed)",
        "Start the same command once per process; the processes share nothing but --out (on a shared "
        "file system). Without these options JAX's detection applies (SLURM, Open MPI, Cloud TPU, "
        "JAX_COORDINATOR_ADDRESS); elsewhere the study runs in one process.")
    m.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0, where JAX's coordination service listens")
    m.add_argument("--num-processes", type=_positive_int, default=None, metavar="N",
                   help="how many processes run the study (1: one process, no detection)")
    m.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0 .. N-1")
    m.add_argument("--coordinator-timeout", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for the coordinator and the other processes (default: 300)")
    m.add_argument("--heartbeat-timeout", type=_positive_int, default=None, metavar="SECONDS",
                   help="silence after which JAX's runtime declares a process dead and stops the others "
                        "(default: 100)")
    r = sub.add_parser("report", help="rewrite report.md and figures/ of a study folder",
                       description="Rewrite report.md and figures/ of a study folder from its finished units.")
    r.add_argument("out", help="study folder")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import DatasetUnavailableError
    from .study.runner import QUICK, make_report, run_study, study_config
    from .study.distributed import DistributedError
    from .study.store import ResultsStore, StudyStoreError

    try:
        if args.command == "report":
            print(f"report written to {make_report(ResultsStore(args.out))}")
            return 0
        options = dict(QUICK) if args.quick else {}
        for name in ("dataset", "folds", "decays", "groups", "methods", "epochs", "patience",
                     "batch_size", "learning_rate", "width", "eval_size", "region", "steps",
                     "perturbation", "seed", "precision"):
            value = getattr(args, name)
            if value is not None:
                options[name] = value
        config = study_config(**options)
        processes = _processes(args)
        result = run_study(config, args.out, overwrite=args.overwrite, progress=not args.no_progress,
                           processes=processes)
    # A missing package or data set is the user's to fix: say what to run, without a traceback.
    except (ValueError, TypeError, StudyStoreError, FileNotFoundError, ImportError,
            DatasetUnavailableError, DistributedError) as err:
        print(f"jaxattr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = ("finished units are saved; run the same command again to resume"
                  if args.command == "study" else "the report may be incomplete; run it again")
        print(f"\njaxattr {args.command}: interrupted: {resume}.", file=sys.stderr)
        return INTERRUPTED
    print(result.summary() if processes.count == 1 else f"{processes.label}: {result.summary()}")
    return 0


def _processes(args: argparse.Namespace):
    """Join ``jax.distributed`` as the options (or JAX's detection) say; one process otherwise."""
    from .study import distributed

    timeout = distributed.DEFAULT_TIMEOUT if args.coordinator_timeout is None else args.coordinator_timeout
    heartbeat = args.heartbeat_timeout or distributed.DEFAULT_HEARTBEAT_TIMEOUT
    return distributed.initialize(args.coordinator, args.num_processes, args.process_id, timeout=timeout,
                                  heartbeat_timeout=heartbeat)


if __name__ == "__main__":
    sys.exit(main())
