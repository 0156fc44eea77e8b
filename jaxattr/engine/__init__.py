"""The one interpreter: trace a pure function, segment it, rewrite segments as custom_vjp rules."""

from __future__ import annotations

import jax

from .audit import Row as Row
from .audit import audit as audit
from .audit import format_audit as format_audit
from .batch import BatchCouplingError as BatchCouplingError
from .batch import check_batch_independent as check_batch_independent
from .ledger import LedgerRow as LedgerRow
from .ledger import format_ledger as format_ledger
from .ledger import ledger as ledger
from .rewrite import bind_rule as bind_rule
from .rewrite import environment as environment
from .rewrite import run as run
from .segment import KINDS as KINDS
from .segment import Segment as Segment
from .segment import UnsupportedPrimitiveError as UnsupportedPrimitiveError
from .segment import segment as segment
from .trace import Graph as Graph
from .trace import trace as trace

#: jax releases whose jaxpr the segmenter has been tested on (major, minor).
TESTED_JAX = ((0, 10),)


def check_jax_version(version: str = jax.__version__) -> None:
    """Fail loudly on a jax whose jaxpr internals the engine was not tested against."""
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if major_minor not in TESTED_JAX:
        tested = ", ".join(f"{a}.{b}.x" for a, b in TESTED_JAX)
        raise RuntimeError(f"jaxattr's engine is tested on jax {tested}, found jax {version}. Its "
                           "jaxpr primitives may differ: install a tested jax (see pyproject.toml) "
                           "or run the test suite on this version before trusting attributions.")


__all__ = ["trace", "segment", "run", "environment", "bind_rule", "audit", "format_audit", "Row",
           "ledger", "format_ledger", "LedgerRow",
           "Graph", "Segment", "KINDS", "UnsupportedPrimitiveError", "BatchCouplingError",
           "check_batch_independent", "check_jax_version",
           "TESTED_JAX"]
