"""Evaluate genomes in parallel: in this process, in local worker processes, or on a Dask cluster.

:func:`make_map` returns the ``map_fn`` that :class:`evo.search.ga.Search` takes: called with a list of
:class:`~evo.search.tasks.EvalTask`, it yields one :class:`~evo.search.records.Record` per task **as each finishes**,
in any order, so the search journals every result the moment it lands. The three kinds::

    make_map(ctx, workers=1)   # in this process, one genome after another
    make_map(ctx, workers=4)   # 4 local worker processes
    make_map(ctx, scheduler="tcp://10.0.0.5:8786")   # the Dask workers attached to that scheduler

Each is a context manager; keep it open for the whole run (worker start-up costs seconds)::

    ctx = EvalContext(ds, budget, seed, device, study_storage_url(store.path), hardware)
    with make_map(ctx, workers=4) as map_fn:
        Search(ctx, store, map_fn=map_fn, ...).run(generations)

A script (not ``python -m evo``) that starts local workers needs the ``if __name__ ==
"__main__":`` guard: the ``spawn`` start method imports the main module in every worker.

Determinism: a genome's evaluation depends only on (genome, data, budget, seed) when torch runs
on one thread, so every kind runs torch single-threaded (the in-process kind too, for the
duration of each evaluation) and the same seed gives the same records, hence the same front,
whatever the number of workers. Results arriving out of order change only the order of the
journal's lines: ``Search.evaluate`` builds its individuals in the order of the genomes it was
given. Runs on different devices (CPU vs a GPU) are not bit-identical.

Local workers (``workers=N``) are processes started with the ``spawn`` method (torch is not
fork-safe), in the background: ``make_map`` returns at once and each worker takes genomes as
soon as it is ready. Each receives the Dataset and Budget once, at start-up, runs torch, OpenMP,
MKL, OpenBLAS and numba on one thread, warms torch/xlstm, optuna, nevergrad and vectorbt's numba
code with a tiny model and backtest, and then evaluates one genome at a time. With
``device="cuda"`` and several GPUs, worker i sees only GPU i mod n. Their log records (and
warnings) come back to this process's logging. A worker that dies (killed by the kernel's OOM
killer, say) costs only the genome it held, recorded as failed with ``"WorkerError: ..."``; a
fresh worker takes its place and the run goes on. Ctrl-C reaches only the parent (workers ignore
SIGINT), which stops the workers; the genomes in flight are re-evaluated by ``evo run --resume``.

Several machines (Dask distributed; every machine needs the same evo, torch and data-library
versions, e.g. the same ``requirements.txt`` in a virtual environment)::

    # machine 1: the scheduler
    dask scheduler --port 8786 --no-dashboard
    # each GPU machine: one worker process per GPU, one thread each
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://machine1:8786 --nworkers 1 --nthreads 1 --name $(hostname)-gpu0 &
    CUDA_VISIBLE_DEVICES=1 dask worker tcp://machine1:8786 --nworkers 1 --nthreads 1 --name $(hostname)-gpu1 &
    # each CPU-only machine: one single-threaded worker process per core
    dask worker tcp://machine1:8786 --nworkers 8 --nthreads 1
    # anywhere that reaches the scheduler and has the data (the bars are sent to the workers):
    python -m evo run --budget gpu --scheduler tcp://machine1:8786 --out runs/big

``--nthreads 1`` matters: a worker runs that many genomes at once in threads of one process,
and torch's thread setting is per process. Dask's nanny already starts workers with
``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``. The Dataset and Budget are sent to
every worker once (``Client.scatter(broadcast=True)``); a worker that joins later fetches them
from a peer. No more genomes are submitted than the cluster has threads, so each worker holds
one genome at a time and workers joining mid-run get work at the next submission. If a Dask
worker dies mid-genome the scheduler retries that genome on another worker
(``distributed.scheduler.allowed-failures``, default 3) before it is recorded as a
``WorkerError: KilledWorker``. A SQLite ``study_storage`` (the run's ``studies.db``) is not sent
to Dask workers, which may not see that file: their learning-rate studies stay in memory.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from evo.errors import ConfigError
from evo.search.records import Record
from evo.search.tasks import EvalContext, EvalTask, task_record

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from evo.config import Budget

__all__ = ["DaskMap", "EvalContext", "EvalMap", "InProcessMap", "ProcessPoolMap", "failed_record", "make_map",
           "prepare_process"]

log = logging.getLogger(__name__)

# One thread for every numeric library a worker loads (set before the worker imports them).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}

# Test hook: a worker (local or Dask) handed the genome with this key exits at once, as a worker
# killed by the OS would (tests/test_parallel.py). Read by the worker processes only.
CRASH_ENV = "EVO_TEST_CRASH_GENOME"


def failed_record(task: EvalTask, message: str) -> Record:
    """The record of a genome whose worker failed (not the genome itself): ``"WorkerError: ..."``."""
    return task_record(task, None, f"WorkerError: {message}")


class EvalMap:
    """A ``map_fn`` for :class:`evo.search.ga.Search`: ``map_fn(tasks)`` yields one Record per task, in
    completion order. Close it (or use it as a context manager) when the run ends."""

    kind = "?"
    workers = 1

    def __call__(self, tasks: list[EvalTask]) -> Iterator[Record]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers (idempotent)."""

    def __enter__(self) -> EvalMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_map(ctx: EvalContext, *, workers: int = 1, scheduler: str | None = None,
             progress: Callable[[str], None] | None = None) -> EvalMap:
    """The evaluation map for a run.

    Args:
        ctx: what every evaluation gets (:class:`evo.search.tasks.EvalContext`: data, budget,
            seed, device, study storage, hardware). A SQLite ``study_storage`` is shared by
            local workers (with a 60 s lock timeout) but not sent to Dask workers, which may run
            on machines without that file: their learning-rate studies stay in memory (the
            results are the same; ``studies.db`` lacks them).
        workers: local worker processes (>= 1); 1 evaluates in this process.
        scheduler: address of a Dask scheduler (``tcp://host:8786``); its workers do the work,
            so ``workers`` must stay 1.
        progress: in-process only: receives evaluate_genome's "model A, 3 folds" messages.

    Raises ConfigError on a bad combination or an unreachable scheduler (before any work).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {workers!r}")
    if scheduler:
        if workers != 1:
            raise ConfigError("--workers and --scheduler exclude each other: with a scheduler, the Dask workers "
                              "attached to it do the work (start one per GPU or core with --nthreads 1)")
        return DaskMap(scheduler, ctx)
    if workers == 1:
        return InProcessMap(ctx, progress=progress)
    cores = os.cpu_count() or 1
    if workers > cores:
        log.warning("%d workers on %d CPU cores: they will compete for the cores", workers, cores)
    return ProcessPoolMap(workers, ctx)


def _shared_storage(url: str) -> str:
    """``url`` made safe for several worker processes: the Optuna tables are created here first
    (two workers creating them at once would collide) and a SQLite file gets a 60 s lock timeout
    instead of 5 s, so a busy writer delays a worker instead of failing its genome."""
    import optuna

    if url.startswith("sqlite") and "?" not in url:
        url += "?timeout=60"
    optuna.storages.RDBStorage(url)
    return url


# ------------------------------------------------------------------------------------------------
# what every worker process does once


_PREPARED: dict[str, float] = {}


def prepare_process(device: str = "cpu", budget: Budget | None = None) -> float:
    """Make this process a single-threaded evaluator and warm its libraries, once per process.

    Sets torch's intra- and inter-op threads to 1 (the thread environment variables must already
    be set for OpenMP/BLAS, which read them at import), then trains a tiny xLSTM model for one
    epoch and runs tiny vectorbt backtests (with stop orders only when ``budget`` tunes stops:
    compiling that path costs seconds), so the first genome does not pay for imports and numba
    compilation. Returns the seconds it took (0 when done before in this process).
    """
    if "seconds" in _PREPARED:
        return 0.0
    t0 = time.perf_counter()
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already ran in this process
        pass
    _warm_up(device, budget)
    _PREPARED["seconds"] = time.perf_counter() - t0
    return _PREPARED["seconds"]


def _warm_up(device: str, budget: Budget | None) -> None:
    """Import and run each heavy library once on synthetic data (results are discarded)."""
    import nevergrad  # noqa: F401 - imported by evo.evaluation.risk.tune_risk
    import numpy as np
    import pandas as pd

    import models.tuning  # noqa: F401 - optuna's import
    from backtest import CostModel, RiskRules, backtest_signals
    from models import ModelConfig, TrainConfig, train_model

    rng = np.random.default_rng(0)
    n, seq, feats = 48, 4, 2
    X = rng.normal(size=(n, seq, feats)).astype(np.float32)
    y = np.arange(n, dtype=np.int64) % 3
    r = rng.normal(0, 0.01, n)
    cfg = ModelConfig(n_features=feats, embedding_dim=8, num_blocks=2, num_heads=2, slstm_at=(0,), dropout=0.0,
                      seq_len=seq)
    train_model(cfg, TrainConfig(lr=1e-3, max_epochs=1, patience=1, batch_size=16, seed=0, device=device),
                (X, y, r), (X[:16], y[:16], r[:16]))
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 64)))
    bars = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": np.ones(64)}, index=pd.date_range("2020-01-01", periods=64, freq="D"))
    signal_ = np.tile(np.array([0, 1, 1, 0, -1, -1, 0, 1], dtype=np.int8), 8)
    rules = [RiskRules(), RiskRules(size=0.5, breaker=0.2)]
    if budget is not None and budget.evaluate.tune_stops:
        rules.append(RiskRules(size=0.5, stop_loss=0.02, take_profit=0.03, breaker=0.2))
    for risk in rules:
        backtest_signals(bars, signal_, costs=CostModel(), periods_per_year=252.0, risk=risk)


# ------------------------------------------------------------------------------------------------
# in process


class InProcessMap(EvalMap):
    """One genome after another in this process, torch on one thread while each runs (restored
    after), as :class:`evo.search.ga.Search` does without a map."""

    kind = "in-process"

    def __init__(self, context: EvalContext, *, progress: Callable[[str], None] | None = None):
        self.context, self.progress = context, progress

    def __call__(self, tasks: list[EvalTask]) -> Iterator[Record]:
        import torch

        for task in tasks:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                record = self.context.evaluate(task, progress=self.progress)
            finally:
                torch.set_num_threads(threads)
            yield record


# ------------------------------------------------------------------------------------------------
# local worker processes


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    slot: int
    ready: bool = False
    task: EvalTask | None = None


_SEND_LOCK = threading.Lock()   # in a worker: records and log records share one pipe


def _send(conn: Connection, message: tuple[str, Any]) -> None:
    with _SEND_LOCK:
        conn.send(message)


class _PipeLogHandler(logging.Handler):
    """In a worker: send each log record to the parent, which hands it to its own handlers."""

    def __init__(self, conn: Connection):
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) if record.exc_info else record.getMessage()
            rec = logging.makeLogRecord({**record.__dict__, "msg": msg, "args": None, "exc_info": None,
                                         "exc_text": None, "stack_info": None})
            _send(self.conn, ("log", rec))
        except Exception:  # noqa: BLE001 - logging must never break an evaluation
            self.handleError(record)


def _worker_main(conn: Connection, log_level: int) -> None:
    """A local worker: receive the run's data once, prepare, then evaluate tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(conn)]
    root.setLevel(log_level)
    logging.captureWarnings(True)   # warnings too go to the parent's log, not over its progress bar
    try:
        launched = conn.recv()   # the parent's time.time() at the launch
        context: EvalContext = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):   # the parent is gone
        return
    prepare_process(context.device, context.budget)
    _send(conn, ("ready", time.time() - launched))
    crash_key = os.environ.get(CRASH_ENV)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):   # the parent is gone
            return
        if task is None:
            return
        if crash_key and task.genome.key() == crash_key:
            os._exit(1)
        record = context.evaluate(task)
        try:
            _send(conn, ("record", record))
        except (BrokenPipeError, OSError):
            return


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (e.g. ["2", "3"])."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _feed(conn: Connection, launched: float, payload: bytes) -> None:
    try:
        conn.send(launched)
        conn.send_bytes(payload)
    except OSError:   # the worker died first; the parent's loop sees it
        pass


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


class ProcessPoolMap(EvalMap):
    """``workers`` long-lived local processes, each evaluating one genome at a time.

    The workers start in the background (the constructor returns at once; see :meth:`wait_ready`)
    and take tasks as they become ready. A worker gets a task only when it is idle, so a worker's
    death is charged to exactly the genome it held (not to its neighbours, as
    ``concurrent.futures.ProcessPoolExecutor`` would: one death there fails every pending future
    and stops every worker).

    Attributes:
        startup_seconds: per worker started, seconds from its launch to ready (interpreter,
            imports, receiving the Dataset, warm-up), in the order this process noticed them.
    """

    kind = "processes"

    def __init__(self, workers: int, context: EvalContext):
        import multiprocessing

        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        if context.study_storage:
            context = replace(context, study_storage=_shared_storage(context.study_storage))
        self._payload = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
        self.startup_seconds: list[float] = []
        self._closed = False
        self._pool: list[_Worker] = []
        self._gpus: list[str] = []
        try:
            self._gpus = _visible_gpus() if context.device.startswith("cuda") else []
            self._pool = [self._spawn(slot) for slot in range(workers)]
        except BaseException:
            self.close()
            raise
        log.info("starting %d worker processes", workers)

    # -- workers -------------------------------------------------------------------------------

    def _spawn(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, logging.getLogger().getEffectiveLevel()),
                                 name="evo-worker", daemon=True)
        # The child reads the thread variables when it imports numpy/torch, before our code runs:
        # set them in the environment it inherits, for the moment of the launch only. With several
        # GPUs, worker slot i sees only GPU i mod n (as "cuda:0").
        env = dict(THREAD_ENV)
        if len(self._gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self._gpus[slot % len(self._gpus)]
        saved = {k: os.environ.get(k) for k in env}
        launched = time.time()
        os.environ.update(env)
        try:
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        # The Dataset goes through our pipe, not the launch arguments: multiprocessing writes those
        # while holding the pipe's read end too, and would block for ever on a child that died
        # before reading them. A thread, so the run goes on while a replacement starts up.
        threading.Thread(target=_feed, args=(parent, launched, self._payload), name="evo-worker-feed",
                         daemon=True).start()
        return _Worker(proc, parent, slot)

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Block until every worker has started (the map does not need this: tasks go to workers
        as they become ready). RuntimeError if one dies while starting or the time runs out."""
        from multiprocessing.connection import wait

        self._revive()
        deadline = time.perf_counter() + timeout_s
        while not all(w.ready for w in self._pool):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"evo worker processes did not start within {timeout_s:.0f} s")
            waiting = [w for w in self._pool if not w.ready]
            wait([w.conn for w in waiting] + [w.process.sentinel for w in waiting], timeout=left)
            for w in waiting:
                for record in self._drain(w):   # no task is out yet: nothing to return
                    raise AssertionError(f"unexpected record from a starting worker: {record.key}")

    def _drain(self, w: _Worker) -> list[Record]:
        """Read everything ``w`` has sent; if it died, replace it. Returns the records it finished
        (a result, or the failure of the task it held when it died)."""
        out: list[Record] = []
        try:
            while w.conn.poll():
                kind, value = w.conn.recv()
                if kind == "log":
                    logging.getLogger(value.name).handle(value)
                elif kind == "ready":
                    w.ready = True
                    self.startup_seconds.append(float(value))
                elif kind == "record":
                    out.append(value)
                    w.task = None
        except (EOFError, OSError):
            pass
        if not w.process.is_alive():
            out.extend(self._replace(w))
        return out

    def _replace(self, w: _Worker) -> list[Record]:
        w.process.join()
        why = _describe_exit(w.process.exitcode)
        w.conn.close()
        if not w.ready:
            raise RuntimeError(f"an evo worker process died while starting ({why}); its error is above")
        self._pool[self._pool.index(w)] = self._spawn(w.slot)
        if w.task is None:
            log.warning("worker process %d died (%s) while idle; started another", w.process.pid, why)
            return []
        log.warning("worker process %d died (%s) evaluating genome %s; recorded it as failed and started "
                    "another worker", w.process.pid, why, w.task.genome.key())
        return [failed_record(w.task, f"worker process died ({why}) while evaluating this genome")]

    # -- map -----------------------------------------------------------------------------------

    def __call__(self, tasks: list[EvalTask]) -> Iterator[Record]:
        from multiprocessing.connection import wait

        if self._closed:
            raise RuntimeError("this evaluation map is closed")
        self._revive()
        todo = deque(tasks)
        try:
            while True:
                for w in self._pool:
                    if todo and w.ready and w.task is None and w.process.is_alive():
                        task = todo.popleft()
                        try:
                            w.conn.send(task)
                            w.task = task
                        except OSError:   # it just died, idle: the task waits for its successor
                            todo.appendleft(task)
                live = list(self._pool)
                if not todo and all(w.task is None for w in live):
                    return
                wait([w.conn for w in live] + [w.process.sentinel for w in live])
                done = [r for w in live for r in self._drain(w)]
                yield from done
        finally:
            self._abandon()

    def _abandon(self) -> None:
        """Stop the workers still busy with tasks nobody will collect (the caller stopped early:
        Ctrl-C, an error); the next call starts their replacements."""
        for w in self._pool:
            if w.task is not None:
                w.process.terminate()
                w.process.join()
                w.task = None

    def _revive(self) -> None:
        for i, w in enumerate(self._pool):
            if not w.process.is_alive():
                w.process.join()
                w.conn.close()
                self._pool[i] = self._spawn(w.slot)

    def close(self) -> None:
        """Stop every worker (SIGTERM: they hold nothing worth saving; a genome in flight is
        evaluated again by ``evo run --resume``)."""
        if self._closed:
            return
        self._closed = True
        for w in self._pool:
            if w.process.is_alive():
                w.process.terminate()
        for w in self._pool:
            w.process.join()
            w.conn.close()


# ------------------------------------------------------------------------------------------------
# Dask distributed


def _dask_evaluate(task: EvalTask, context: EvalContext) -> Record:
    """What a Dask worker runs per genome (prepares its process on the first call)."""
    prepare_process(context.device, context.budget)
    if os.environ.get(CRASH_ENV) == task.genome.key():
        os._exit(1)
    return context.evaluate(task)


class DaskMap(EvalMap):
    """Genomes evaluated by the workers of a Dask scheduler (see the module docstring for the
    commands that start them). The scheduler and workers are the user's: ``close`` disconnects
    and cancels what is still running, and leaves them up."""

    kind = "dask"

    def __init__(self, address: str, context: EvalContext, *, connect_timeout_s: float = 30.0):
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs Dask's 'distributed' package: pip install distributed") from None
        self.address = address
        if context.study_storage and context.study_storage.startswith("sqlite"):
            log.warning("with --scheduler the learning-rate studies are not saved to %s (the workers may run on "
                        "other machines); the results are the same", context.study_storage)
            context = replace(context, study_storage=None)
        self._token = uuid.uuid4().hex[:8]
        self._pending: dict[Any, EvalTask] = {}
        try:
            self.client = Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            n = len(self.client.scheduler_info().get("workers", {}))
            if n == 0:
                log.warning("no Dask worker is attached to %s yet; waiting for one "
                            "(start it with: dask worker %s --nthreads 1)", address, address)
                self.client.wait_for_workers(1)
            self.workers = len(self.client.scheduler_info().get("workers", {}))
            log.info("Dask scheduler %s with %d workers", address, self.workers)
            # Sent once to every worker now (workers that join later fetch it from a peer).
            self._context = self.client.scatter(context, broadcast=True, hash=False)
        except BaseException:
            self.client.close()
            raise

    def __call__(self, tasks: list[EvalTask]) -> Iterator[Record]:
        from distributed import as_completed

        todo = deque(tasks)
        running = as_completed(loop=self.client.loop)

        def submit() -> None:
            # No more genomes out than the cluster has threads: each worker then holds one genome
            # at a time, so a worker's death is charged to that genome only (a queued neighbour
            # would count as "running" too) and workers joining later still get work.
            capacity = max(1, sum(self.client.nthreads().values()))
            while todo and len(self._pending) < capacity:
                task = todo.popleft()
                key = f"evo-evaluate-{task.genome.key()[:16]}-{self._token}-{uuid.uuid4().hex[:6]}"
                fut = self.client.submit(_dask_evaluate, task, self._context, key=key, pure=False)
                self._pending[fut] = task
                running.add(fut)

        try:
            submit()
            for fut in running:
                task = self._pending.pop(fut)
                try:
                    record = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker's failure must not end the run
                    log.warning("genome %s failed on its Dask worker: %s: %s", task.genome.key(),
                                type(exc).__name__, exc)
                    record = failed_record(task, f"{type(exc).__name__}: {exc}")
                fut.release()
                submit()
                yield record
        finally:
            if self._pending:
                self.client.cancel(list(self._pending))
                self._pending.clear()

    def close(self) -> None:
        if getattr(self, "client", None) is None:
            return
        try:
            if self._pending:
                self.client.cancel(list(self._pending))
            self.client.close()
        finally:
            self.client = None
