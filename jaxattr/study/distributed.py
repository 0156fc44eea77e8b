"""The study across processes and hosts, on JAX's own multi-process runtime (``jax.distributed``).

``jaxattr study`` is started once per process (one per GPU, per host or per TPU host): each
process joins the runtime (:func:`initialize`), takes a deterministic share of the pending work
(:func:`share`), trains and evaluates it on its own devices and writes its own unit files; the
output folder on a shared file system is all the processes share. The units are independent, so
no collective is needed: the runtime names the processes, and its coordination service provides
the barriers (:meth:`Processes.barrier`) and notices a dead process (its heartbeats stop).

Order of a run (see :func:`jaxattr.study.runner.run_study`):

1. process 0 creates (or resumes, or overwrites) the study folder; barrier ``open``;
2. every process reads the pending units; barrier ``planned`` (nobody writes before everyone has
   read, so all hold the same list and the same share);
3. each process trains and evaluates its share: units are written atomically, one file per unit,
   each by the process that owns the unit;
4. each process waits until the store holds every unit (:func:`wait_for_units`); process 0 writes
   ``results.csv`` and the report; barrier ``done``; every process leaves the runtime.

A process killed at any moment loses at most its unit in progress. JAX's runtime then stops the
others too: at once when process 0 (the coordinator) dies, after the heartbeat timeout when
another does (each loses at most its own unit in progress). Rerunning the same command, with
any number of processes, resumes.
"""
from __future__ import annotations

import dataclasses
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

import jax

__all__ = ["DistributedError", "Processes", "SINGLE", "initialize", "share", "wait_for_units"]

T = TypeVar("T")

#: Seconds this process spent joining the runtime, at barriers and waiting for the others' units
#: (``benchmarks/distributed.py`` reads them).
SECONDS = {"initialize": 0.0, "barriers": 0.0, "waiting": 0.0}

#: Seconds a process waits for the coordinator (and process 0 for the others) by default.
DEFAULT_TIMEOUT = 300
#: Seconds of silence after which JAX's runtime declares a process dead (JAX's default).
DEFAULT_HEARTBEAT_TIMEOUT = 100


class DistributedError(RuntimeError):
    """The multi-process runtime cannot be joined or was given inconsistent settings."""


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place among the study's processes: ``index`` of ``count``."""

    index: int = 0
    count: int = 1
    coordinator: Optional[str] = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes what is shared (config.json, results.csv, the report)."""
        return self.index == 0

    @property
    def label(self) -> str:
        return f"process {self.index} of {self.count}"

    def barrier(self, name: str, timeout: float) -> None:
        """Wait until every process reaches barrier ``name`` (at most ``timeout`` seconds)."""
        if self.count == 1:
            return
        client = jax._src.distributed.global_state.client  # the runtime's coordination client
        start = time.perf_counter()
        try:
            client.wait_at_barrier(f"jaxattr-study-{name}", int(timeout * 1000))
            SECONDS["barriers"] += time.perf_counter() - start
        except Exception as error:  # jax raises JaxRuntimeError (DEADLINE_EXCEEDED, ...)
            raise DistributedError(
                f"{self.label}: not every process reached the {name!r} point within {timeout:.0f} s; one "
                f"of them may have stopped. Finished units are saved: run the same command again "
                f"(with any number of processes) to resume. ({str(error).splitlines()[0]})") from None


#: The one process of a run without ``jax.distributed``.
SINGLE = Processes()


def share(items: Sequence[T], processes: Processes) -> list[T]:
    """Process ``i`` of ``N`` takes ``items[k]`` for every ``k ≡ i (mod N)``: deterministic,
    disjoint, covering, and balanced to one item."""
    return list(items[processes.index::processes.count])


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"coordinator must be HOST:PORT (e.g. 10.0.0.1:12355), got {address!r}")
    return host, int(port)


def _wait_reachable(address: str, timeout: float, label: str) -> None:
    """Connect to the coordinator's port until it answers or ``timeout`` passes. JAX's client
    aborts the process when it cannot register (a C++ fatal error saying that "another task
    died"); this fails first, with an exception that says what is wrong."""
    host, port = _host_port(address)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, max(0.1, timeout))):
                return
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise DistributedError(
                f"{label}: cannot reach the coordinator at {address} within {timeout:g} s ({last}). Start "
                f"process 0 with the same --coordinator (it listens on that port), check the host name and "
                f"that the port is open between the hosts, or raise --coordinator-timeout.")
        time.sleep(0.25)


def _detected() -> bool:
    """Whether JAX's cluster detection finds an environment it can initialize from (SLURM, Open
    MPI, a Cloud TPU pod, ...) or JAX_COORDINATOR_ADDRESS is set."""
    import os

    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    from jax._src import clusters

    for env in clusters.ClusterEnv._cluster_types:
        try:
            if not env.opt_in_only_method and env.is_env_present():
                return True
        except Exception:  # a detector that cannot run here does not apply
            continue
    return False


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, timeout: float = DEFAULT_TIMEOUT,
               heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT, detect: bool = True,
               log: Callable[[str], Any] = lambda text: print(text, file=sys.stderr, flush=True)) -> Processes:
    """Join JAX's multi-process runtime and return this process's place in it.

    With ``coordinator``, ``num_processes`` and ``process_id`` given (all three, or
    ``num_processes=1`` alone), those; with none, whatever :func:`jax.distributed.initialize`
    detects (SLURM, Open MPI, a Cloud TPU pod, ``JAX_COORDINATOR_ADDRESS``...) when ``detect``,
    else a single process. A single process does not start the runtime at all. Calling this when
    the runtime is already up returns the place it gives.

    Raises :class:`DistributedError` for incomplete settings, and when a process other than 0
    cannot reach ``coordinator`` within ``timeout`` seconds (process 0 waits up to ``timeout`` for
    the others; JAX's runtime ends it when they do not come, saying so).
    """
    if jax.distributed.is_initialized():
        return Processes(jax.process_index(), jax.process_count(),
                         jax._src.distributed.global_state.coordinator_address)
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if num_processes == 1 and coordinator is None and process_id in (None, 0):
        return SINGLE
    if any(v is not None for v in given.values()):
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise DistributedError(
                f"a multi-process study needs --coordinator HOST:PORT, --num-processes N and --process-id I "
                f"together (or none of them, to let JAX detect a SLURM/MPI/TPU environment); missing: "
                f"{', '.join(missing)}")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise DistributedError(
                f"--process-id must lie in [0, --num-processes) = [0, {num_processes}); got {process_id}")
        _host_port(coordinator)
    elif not (detect and _detected()):
        return SINGLE
    label = (f"process {process_id} of {num_processes}" if process_id is not None
             else "this process")
    if coordinator is not None and process_id != 0:
        _wait_reachable(coordinator, timeout, label)
    elif coordinator is not None:
        log(f"jaxattr study: {label}: coordinator at {coordinator}, waiting up to {timeout:g} s for the "
            f"other {num_processes - 1} process(es) to join")
    start = time.perf_counter()
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=max(1, int(timeout)),
                                   heartbeat_timeout_seconds=int(heartbeat_timeout))
    except (ValueError, RuntimeError, TypeError) as error:
        raise DistributedError(f"{label}: cannot start JAX's multi-process runtime: {error}") from None
    SECONDS["initialize"] += time.perf_counter() - start
    return Processes(jax.process_index(), jax.process_count(), jax._src.distributed.global_state.coordinator_address)


def wait_for_units(done: Callable[[], int], total: int, processes: Processes, *,
                   poll: float = 0.5, log: Optional[Callable[[str], Any]] = None) -> None:
    """Block until ``done()`` (units finished in the store) reaches ``total``.

    No timeout: the other processes may have hours of work left. A dead process is noticed by
    JAX's runtime, which ends this one (see the module's docstring)."""
    waited, told, start = 0.0, False, time.perf_counter()
    while done() < total:
        if log is not None and not told and waited >= 5:
            log(f"jaxattr study: {processes.label}: my units are done; waiting for the other processes "
                f"({done()} of {total} units finished)")
            told = True
        time.sleep(poll)
        waited += poll
        poll = min(poll * 1.5, 10.0)
    SECONDS["waiting"] += time.perf_counter() - start
