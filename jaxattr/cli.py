"""``jaxattr`` command line: ``jaxattr study`` reproduces Amorim et al. 2020; ``jaxattr report``
rewrites a study folder's report.

    jaxattr study --quick --out runs/quick          # a few minutes on a 2-core CPU
    jaxattr study --out runs/digits                 # the paper's protocol on scikit-learn digits
    jaxattr study --dataset cifar10 --out runs/c10  # the paper's data (pip install 'jaxattr[cifar]')
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _names(text: str) -> tuple:
    return tuple(v for v in text.replace(",", " ").split() if v)


def build_parser() -> argparse.ArgumentParser:
    from .study.runner import DATASETS, DEFAULTS, METHODS, PAPER_METHODS, QUICK, WIDTHS

    parser = argparse.ArgumentParser(prog="jaxattr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("study", help="train, explain, evaluate and report the regularisation study",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--dataset", choices=DATASETS, default=None, help="data set (default digits)")
    s.add_argument("--folds", type=int, default=None, help="cross-validation folds (paper: 10)")
    s.add_argument("--decays", type=_floats, default=None,
                   help="L2 decays, comma-separated (paper: 0,1e-4,1e-3,5e-3,1e-2,5e-2)")
    s.add_argument("--groups", type=_names, default=None, help="layer groups (paper: B1,B2,B3,D1,D2,B,D,A)")
    s.add_argument("--methods", type=_names, default=None,
                   help=f"methods (paper: {','.join(PAPER_METHODS)}); any of {', '.join(METHODS)}")
    s.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 100)")
    s.add_argument("--patience", type=int, default=None, help="early-stopping patience (paper: 10)")
    s.add_argument("--batch-size", type=int, default=None, help="training batch size (default 64)")
    s.add_argument("--learning-rate", type=float, default=None, help="Adam learning rate (default 1e-3)")
    s.add_argument("--width", choices=list(WIDTHS), default=None, help="CNN width (default paper)")
    s.add_argument("--eval-size", type=int, default=None,
                   help="evaluate at most this many test images per fold (default: all)")
    s.add_argument("--region", type=int, default=None, help="perturbed region side in pixels (default 1)")
    s.add_argument("--steps", type=int, default=None, help="AOPC steps L (default 10 = 10%% each)")
    s.add_argument("--perturbation", default=None, choices=("uniform", "zeros", "mean", "blur"),
                   help="fill of perturbed pixels (paper: uniform)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    s.add_argument("--quick", action="store_true",
                   help="a small preset (" + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ")")
    s.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    s.add_argument("--overwrite", action="store_true", help="delete an existing study in --out first")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    r = sub.add_parser("report", help="rewrite report.md and figures/ of a study folder")
    r.add_argument("out", help="study folder")
    parser.set_defaults(_defaults=DEFAULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import DatasetUnavailableError
    from .study.runner import QUICK, make_report, run_study, study_config
    from .study.store import ResultsStore, StudyStoreError

    try:
        if args.command == "report":
            print(f"report written to {make_report(ResultsStore(args.out))}")
            return 0
        options = dict(QUICK) if args.quick else {}
        for name in ("dataset", "folds", "decays", "groups", "methods", "epochs", "patience",
                     "batch_size", "learning_rate", "width", "eval_size", "region", "steps",
                     "perturbation", "seed"):
            value = getattr(args, name)
            if value is not None:
                options[name] = value
        config = study_config(**options)
        result = run_study(config, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    # A missing package or data set is the user's to fix: say what to run, without a traceback.
    except (ValueError, TypeError, StudyStoreError, FileNotFoundError, ImportError,
            DatasetUnavailableError) as err:
        print(f"jaxattr {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
