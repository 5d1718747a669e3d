"""Executors: run a job's tasks in this process or on a pool of Ray actors.

This is the only module that knows about Ray. A job (for a run: the recipe's stage chain) is set
up once per Ray actor, so models load once per worker, and processes whole tasks (a unit or a
shard), so every task's output is committed atomically by the worker that produced it. A run's
actors (RayPool) serve all its segments and its global stages' prepare phases, so no worker
process starts per segment or phase. Short tasks go to an actor several per call. Actors restart
and retry a call if their process dies; tasks are idempotent (temporary names + rename), so a
retry cannot duplicate documents.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from pipeline.config import Recipe, RuntimeConfig
from pipeline.errors import CurateError
from pipeline.io.writer import output_fs
from pipeline.runner.ray_lean_node import lean_head_node
from pipeline.runner.runlog import ray_output_to_run_log, run_log_tail
from pipeline.runner.unit import StageChain, Task, process_task
from pipeline.stages.global_base import GlobalContext, LocalContext

log = logging.getLogger(__name__)

UnitResult = dict[str, Any]

# `executor: auto` runs an input of at most this many bytes (files as stored, compressed) in this
# process, larger ones on Ray. Measured on 2 cores (docs/benchmarks.md, "Start-up"): an embedded
# Ray costs ~10 s to start (quiet machine); the refinedweb chain reads ~0.4 MB of WARC per CPU
# second in-process, so two Ray workers win that back from ~9 MB of WARC, while text input (no
# extraction) reads ~10x faster and breaks even far above. 16 MB lies between the two.
AUTO_LOCAL_MAX_BYTES = 16 << 20
# Under `executor: auto`, a global stage's prepare over at most this many documents runs in the
# driver process even on Ray (a large input filtered down to few documents): a few shards of
# signatures take well under a second there, while on Ray every worker loads the phase's
# compiled kernels (numba) for its first call, seconds on 2 cores. An explicit `executor: ray`
# keeps every phase on the cluster (on the run's actors: no process starts per phase).
PREPARE_LOCAL_MAX_DOCS = 20_000


class Job(Protocol):
    """Picklable work description: set up once per worker, then run task after task."""

    def setup(self) -> None: ...

    def run(self, task: Any, worker: str) -> UnitResult: ...

    def close(self) -> None: ...


class RecipeJob:
    """The job of `curate run`: a recipe's stage chain applied to units and shards.

    `on_batch` (in-process runs only; never pickled): called with the documents of each batch
    read, so progress moves within a unit.
    """

    def __init__(self, recipe: Recipe, on_batch: Callable[[int], None] | None = None) -> None:
        self.recipe_dict = recipe.to_dict()
        self.source = recipe.source
        self._recipe: Recipe | None = recipe
        self._chain: StageChain | None = None
        self.on_batch = on_batch

    def __getstate__(self) -> dict[str, Any]:
        return {"recipe_dict": self.recipe_dict, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _recipe=None, _chain=None, on_batch=None)

    def setup(self) -> None:
        from pipeline.config import recipe_from_dict

        if self._recipe is None:
            self._recipe = recipe_from_dict(self.recipe_dict, source=self.source)
        self._chain = StageChain(self._recipe)

    def run(self, task: Task, worker: str) -> UnitResult:
        assert self._recipe is not None and self._chain is not None
        return process_task(self._recipe, self._chain, task, worker=worker, on_batch=self.on_batch)

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()


def run_local(job: Job, tasks: list[Any], runtime: RuntimeConfig) -> Iterator[UnitResult]:
    """Process tasks one after another in this process."""
    job.setup()
    try:
        for task in tasks:
            yield job.run(task, "local")
    finally:
        job.close()


def resolve_executor(runtime: RuntimeConfig, sizes: list[int | None]) -> RuntimeConfig:
    """`runtime` with `executor: auto` decided for an input whose files have `sizes` (bytes,
    None when unknown): in-process up to AUTO_LOCAL_MAX_BYTES, else Ray; Ray too when a
    cluster is named (ray_address or $RAY_ADDRESS) or a size is unknown (a remote dataset)."""
    if runtime.executor != "auto":
        return runtime
    cluster = runtime.ray_address or os.environ.get("RAY_ADDRESS")
    total = sum(s or 0 for s in sizes)
    if cluster:
        chosen, why = "ray", f"a Ray cluster is named ({cluster})"
    elif any(s is None for s in sizes):
        chosen, why = "ray", "the input's size is not known"
    elif total > AUTO_LOCAL_MAX_BYTES:
        chosen, why = "ray", f"{total / 1e6:.1f} MB of input > {AUTO_LOCAL_MAX_BYTES / 1e6:.1f} MB"
    else:
        chosen, why = (
            "local",
            f"{total / 1e6:.1f} MB of input <= {AUTO_LOCAL_MAX_BYTES / 1e6:.1f} MB",
        )
    log.info("executor auto: %s (%s)", chosen, why)
    return runtime.model_copy(update={"executor": chosen})


def ensure_ray(address: str | None) -> None:
    """Connect to the cluster at `address` / $RAY_ADDRESS, or start an embedded local Ray.

    Reuses an already initialised Ray (tests share one per session). Ray's own log lines (its
    Python loggers and what its C++ core writes to stderr while connecting) go to the run's log
    file (pipeline.runner.runlog), not the terminal.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "logging_level": logging.WARNING,
        "log_to_driver": True,
    }
    if address is None:
        kwargs.update(embedded_ray_options())
    with _keep_signal_handlers(), ray_output_to_run_log():
        if address is not None:
            use_cluster_token()
        try:
            if address is None:
                init_embedded_ray(**kwargs)
            else:
                ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises several types for one failure
            raise CurateError(ray_connect_problem(address, exc, run_log_tail())) from None
    if address is None:
        _start_reaper(ray.get_runtime_context().get_node_id())
        atexit.register(end_embedded_ray)  # runs before Ray's own hook (registered earlier)


def init_embedded_ray(**kwargs: Any) -> None:
    """ray.init of a new embedded node (address "local": never one a `ray start` on this
    machine left behind) with `kwargs`, lean where Ray's version allows (no autoscaler monitor,
    no API server: pipeline.runner.ray_lean_node); if the lean node fails to start, Ray's own
    node is started instead, with a warning, so a Ray that changed inside cannot stop a run."""
    import ray

    with lean_head_node() as lean:
        try:
            ray.init(address="local", **kwargs)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises several types for one failure
            if not lean:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("a lean embedded Ray did not start (%s); starting Ray's full node", first)
    with contextlib.suppress(Exception):  # what the failed start left
        ray.shutdown()
    ray.init(address="local", **kwargs)


def embedded_ray_options() -> dict[str, Any]:
    """ray.init options of an embedded node (started by this process, not a cluster): no
    dashboard, and workers at this process's niceness, as a process pool's would be.

    Ray raises its workers' niceness by 15 (`worker_niceness`), and the extractor processes
    they start inherit it: next to any other work at normal priority in the same scheduling
    group, such a worker gets ~1/28 of that work's CPU share (issue 24: two actors got 0.08
    cores next to one busy loop; docs/benchmarks.md, round three). $RAY_worker_niceness, when
    set, wins."""
    options: dict[str, Any] = {"include_dashboard": False}
    if "RAY_worker_niceness" not in os.environ:
        options["_system_config"] = {"worker_niceness": 0}  # an increment: the driver's own
    return options


def use_cluster_token() -> None:
    """Turn on Ray's token authentication for connecting to a named cluster when a token is
    at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE is
    unset: `ray start --head` enables tokens, but ray.init with an explicit address does not
    (it fails with InvalidAuthToken)."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token authentication
        return
    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def ray_connect_problem(address: str | None, exc: BaseException, log_text: str = "") -> str:
    """One line on why ray.init failed, with what to do (not Ray's traceback). `log_text`:
    what Ray wrote meanwhile (its C++ core names a refused token only there, at times)."""
    text = str(exc)
    chain, seen = [], exc
    while seen is not None:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    where = f"the Ray cluster at {address}" if address else "an embedded Ray"
    if any(m in "\n".join([*chain, log_text]) for m in ("InvalidAuthToken", "AuthenticationError")):
        return (
            f"{where} refused this process's authentication token: give it the cluster's token "
            "(RAY_AUTH_TOKEN=..., or RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token as on the head "
            "node: `ray get-auth-token`), or use a cluster started with RAY_AUTH_MODE=disabled"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if address is None:
        return f"could not start {where}: {first}; or run in-process with --executor local"
    return f"could not connect to {where}: {first}; check the address (HOST:PORT of `ray start --head`)"


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Restore this process's SIGTERM/SIGINT handlers after the block: ray.init replaces them
    (SIGTERM would exit with native stack dumps instead of the CLI's `interrupted` message)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


# The script of Ray's autoscaler monitor, a head-node process the driver starts (Ray 2.x).
AUTOSCALER_MONITOR = os.path.join("autoscaler", "_private", "monitor.py")


def end_embedded_ray() -> None:
    """At exit, end the embedded node this process started, without Ray's exit waits (~1.5 s
    of every Ray run's wall on 2 cores; docs/benchmarks.md, round five). Ray's own exit hook,
    registered when Ray is imported and so run after this one, then finds nothing to do.

    Two waits go: Ray's exit hook sleeps half a second before it disconnects, for worker
    messages still on their way (a run's are in its log by then); and its shutdown ends the
    GCS before it sends the autoscaler monitor SIGTERM, on which the monitor reports its end
    to the gone GCS, and waits a second for it. The monitor has nothing to scale on one machine
    with fixed resources, so it is killed first. With no such child (another Ray layout), only
    the sleep goes. A lean embedded node (pipeline.runner.ray_lean_node) has no monitor.
    """
    import psutil
    import ray

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if any(arg.endswith(AUTOSCALER_MONITOR) for arg in child.cmdline()):
                child.kill()
                child.wait(timeout=2)  # gone before the shutdown looks at it (a busy machine)
    try:
        ray.shutdown()
    except Exception as exc:  # noqa: BLE001 - Ray's own exit hook tries again after this one
        log.debug("ending the embedded Ray: %s", exc)


_REAPERS: list[subprocess.Popen[bytes]] = []  # kept open: the pipe's EOF is the driver's exit


def _start_reaper(node_id: str) -> None:
    """Start pipeline/runner/ray_reaper.py for the embedded node this process started, so its
    processes end with this one (a kill -9 included) instead of lingering for a minute."""
    script = os.path.join(os.path.dirname(__file__), "ray_reaper.py")
    _REAPERS.append(
        subprocess.Popen(
            [sys.executable, "-I", script, node_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no Ctrl-C from the terminal: it must outlive the driver
        )
    )


# Calls waiting in each Ray actor's queue behind the one it runs, while the run has more tasks
# than actors: the next call is already there when one ends, instead of the actor idling for a
# round trip through the driver (what a process pool's call queue does too).
ACTOR_QUEUE_DEPTH = 1
# A call to an actor carries several tasks when tasks are short. Ray costs ~3.3 ms of CPU per
# call, spread over the driver, the raylet and the worker and its threads (submission, the job's
# reference, the result), which the 2 cores then lack for the work: 1,710 units of 0.1 s at
# 1 GiB spent ~5.7 CPU s on calls (docs/benchmarks.md, round five). Calls aim at CALL_TARGET_S of
# work, from the mean task time measured so far (one task per call until a call has returned);
# the last calls shrink to one task so the actors finish together.
CALL_TARGET_S = 0.5
MAX_TASKS_PER_CALL = 16


def tasks_per_call(left: int, actors: int, mean_task_s: float | None) -> int:
    """Tasks to send in the next actor call: CALL_TARGET_S of work at `mean_task_s` (None: not
    measured yet, one), at most MAX_TASKS_PER_CALL, and at most a 2 x `actors`-th of the
    `left` tasks, so the run's tail is cut fine."""
    if mean_task_s is None:
        return 1
    wanted = MAX_TASKS_PER_CALL if mean_task_s <= 0 else round(CALL_TARGET_S / mean_task_s)
    return max(1, min(wanted, MAX_TASKS_PER_CALL, left // (2 * actors)))


def _timed_map(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], float]:
    """fn over items, and the seconds that took (an actor call's tasks, timed for
    tasks_per_call)."""
    start = time.perf_counter()
    return [fn(item) for item in items], time.perf_counter() - start


def _worker_class() -> Any:
    import ray

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=3)
    class Worker:
        """Runs whole tasks of a set-up job, and the calls of global stages' prepare phases,
        a list of them per call; returns their results and the seconds they took (set-up
        excluded).

        The job arrives with each call as (key, [ref]) and is set up on first use (again only
        when the key changes), so a restarted actor recovers it from the next call.
        """

        def __init__(self) -> None:
            self.key: str | None = None
            self.job: Job | None = None
            self.fn_key: str | None = None
            self.fn: Callable[[Any], Any] | None = None

        def run(self, key: str, job_ref: list[Any], tasks: list[Any]) -> tuple[list[Any], float]:
            if key != self.key:
                if self.job is not None:
                    self.job.close()
                self.job, self.key = None, None
                job = ray.get(job_ref[0])
                job.setup()
                self.job, self.key = job, key
            job, node = self.job, ray.get_runtime_context().get_node_id()
            assert job is not None
            return _timed_map(lambda task: job.run(task, node), tasks)

        def call(self, key: str, fn_ref: list[Any], items: list[Any]) -> tuple[list[Any], float]:
            if key != self.fn_key:
                self.fn, self.fn_key = ray.get(fn_ref[0]), key
            assert self.fn is not None
            return _timed_map(self.fn, items)

    return Worker


class RayPool:
    """The Ray actors of one run: started on first use, then reused by every segment's tasks
    and every CPU phase of a global stage's prepare, so each worker process imports the
    package, loads its models and starts its extractor once per run, not once per segment or
    phase. Grows to the most tasks asked for at once, up to ray_workers(). `close()` ends them."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        self.actors: list[Any] = []
        self._refs: dict[str, Any] = {}  # what was ray.put for the actors, by content digest

    def run(self, job: Job, tasks: list[Any]) -> Iterator[UnitResult]:
        """Run `tasks` of `job`, yielding results as tasks finish."""
        for _, result in self._dispatch("run", job, tasks):
            yield result

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """fn over items on the actors, results in order."""
        results: list[Any] = [None] * len(items)
        for i, result in self._dispatch("call", fn, list(items)):
            results[i] = result
        return results

    def close(self) -> None:
        """End the actors (a later use starts new ones). Runs while a run unwinds from an error
        or a signal too, so a Ray that is already gone is no error here (its actors are too)."""
        import ray

        actors, self.actors, self._refs = self.actors, [], {}
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception as exc:  # noqa: BLE001 - Ray raises several types for a lost node
                log.debug("ending a Ray worker: %s", exc)

    def _put(self, obj: Any) -> tuple[str, Any]:
        """(digest of obj's pickle, its object ref): put once, passed along with every task."""
        import hashlib

        import ray
        from ray import cloudpickle

        key = hashlib.sha256(cloudpickle.dumps(obj)).hexdigest()
        if key not in self._refs:
            self._refs[key] = ray.put(obj)
        return key, self._refs[key]

    def _grow(self, wanted: int) -> None:
        ensure_ray(self.runtime.ray_address)
        worker_cls = _worker_class()
        n = max(1, min(ray_workers(self.runtime), wanted))
        self.actors += [worker_cls.remote() for _ in range(n - len(self.actors))]

    def _dispatch(self, method: str, obj: Any, items: list[Any]) -> Iterator[tuple[int, Any]]:
        """(position, result) of every item as it finishes, the actors' `method` given `obj` (a
        job or a function) and the item; on an error, what is still queued is cancelled."""
        import ray

        if not items:
            return
        self._grow(len(items))  # first: Ray started by ensure_ray, never auto-started by a put
        key, ref = self._put(obj)
        queue = list(reversed(list(enumerate(items))))
        pending: dict[Any, tuple[list[int], int]] = {}  # ref -> (positions, actor index)
        load = [0] * len(self.actors)
        measured, seconds = 0, 0.0  # tasks returned so far and the seconds they took
        try:
            while queue or pending:
                while queue:
                    limit = 1 + ACTOR_QUEUE_DEPTH if len(queue) > len(self.actors) else 1
                    a = min(range(len(self.actors)), key=load.__getitem__)
                    if load[a] >= limit:
                        break
                    mean = seconds / measured if measured else None
                    n = tasks_per_call(len(queue), len(self.actors), mean)
                    batch = [queue.pop() for _ in range(min(n, len(queue)))]
                    call = getattr(self.actors[a], method)
                    done_ref = call.remote(key, [ref], [item for _, item in batch])
                    pending[done_ref] = ([pos for pos, _ in batch], a)
                    load[a] += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                positions, a = pending.pop(done[0])
                load[a] -= 1
                results, took = ray.get(done[0])
                measured, seconds = measured + len(results), seconds + took
                yield from zip(positions, results, strict=True)
        finally:  # no force: Ray refuses it for actor tasks; nothing here may mask the error
            for left in pending:
                with contextlib.suppress(Exception):  # a Ray already gone (a signal, a lost node)
                    ray.cancel(left)


@contextlib.contextmanager
def ray_pool(runtime: RuntimeConfig) -> Iterator[RayPool | None]:
    """A RayPool for the block when the runtime's executor is Ray (None otherwise), its actors
    ended after the block."""
    if runtime.executor != "ray":
        yield None
        return
    pool = RayPool(runtime)
    try:
        yield pool
    finally:
        pool.close()


def run_ray(job: Job, tasks: list[Any], runtime: RuntimeConfig) -> Iterator[UnitResult]:
    """Process tasks on a pool of Ray actors of their own, yielding results as tasks finish."""
    with ray_pool(runtime.model_copy(update={"executor": "ray"})) as pool:
        assert pool is not None
        yield from pool.run(job, tasks)


_CLAMP_WARNED: set[tuple[int, int]] = set()  # warn once per process, not once per segment


def ray_workers(runtime: RuntimeConfig) -> int:
    """Workers to use: runtime.num_workers, else one per CPU of the cluster.

    Each worker is an actor holding one CPU: more than the cluster has could never be placed
    and the run would wait forever, so the number is clamped to the cluster's CPUs (a warning).
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise CurateError(
            "the Ray cluster has no CPU to place a worker on; add a node with CPUs or use "
            "--executor local"
        )
    wanted = runtime.num_workers or cpus
    if wanted > cpus and (wanted, cpus) not in _CLAMP_WARNED:
        _CLAMP_WARNED.add((wanted, cpus))
        log.warning(
            "runtime.num_workers is %d but the Ray cluster has %d CPU(s); using %d workers",
            wanted,
            cpus,
            cpus,
        )
    return min(wanted, cpus)


def execute(
    job: Job, tasks: list[Any], runtime: RuntimeConfig, pool: RayPool | None = None
) -> Iterator[UnitResult]:
    """Run `tasks` of `job` with the executor the runtime names, yielding results as they end;
    on Ray, on `pool`'s actors when given (a run's segments share them), else on a pool of
    their own."""
    if runtime.executor != "ray":
        return run_local(job, tasks, runtime)
    return pool.run(job, tasks) if pool is not None else run_ray(job, tasks, runtime)


class RayContext:
    """A GlobalContext whose `map` runs on Ray, retried if a worker dies: on `pool`'s actors
    when given (no worker processes started per phase), else as Ray tasks; a phase that asks
    for GPUs runs as Ray tasks after the pool's actors (which hold the CPUs) are ended."""

    def __init__(self, work_dir: str, num_partitions: int, pool: RayPool | None = None) -> None:
        self.fs, self.work_dir = output_fs(work_dir)
        self.fs.makedirs(self.work_dir, exist_ok=True)
        self.num_partitions = num_partitions
        self.pool = pool

    def map(self, fn: Callable[[Any], Any], items: Any, *, num_gpus: float | None = 0) -> list[Any]:
        import ray

        gpus = task_gpus(num_gpus, ray.cluster_resources().get("GPU", 0.0))
        if self.pool is not None and not gpus:
            return self.pool.map(fn, items)
        if self.pool is not None:
            self.pool.close()
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=3)(_call)
        return ray.get([remote.remote(fn, item) for item in items])


def task_gpus(requested: float | None, cluster_gpus: float) -> float:
    """GPUs per task: `requested`, or (None) one when the cluster has any.

    A request the cluster cannot meet is an error here: Ray would otherwise wait forever.
    """
    if requested is None:
        return 1.0 if cluster_gpus >= 1 else 0.0
    if requested > cluster_gpus:
        raise CurateError(
            f"tasks ask for {requested:g} GPU(s) each but the Ray cluster has {cluster_gpus:g}; "
            "lower the stage's num_gpus (0 = CPU) or add GPU nodes"
        )
    return requested


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def global_context(
    recipe: Recipe, work_dir: str, documents: int | None = None, pool: RayPool | None = None
) -> GlobalContext:
    """The context a global stage's prepare() runs in, matching the executor (on Ray, on
    `pool`'s actors when given); in-process on Ray too when the stage's input holds at most
    PREPARE_LOCAL_MAX_DOCS `documents`."""
    small = documents is not None and documents <= PREPARE_LOCAL_MAX_DOCS
    if recipe.runtime.executor == "ray" and not small:
        ensure_ray(recipe.runtime.ray_address)
        parts = recipe.runtime.num_partitions or max(4, 2 * ray_workers(recipe.runtime))
        return RayContext(work_dir, parts, pool)
    return LocalContext(work_dir, recipe.runtime.num_partitions or 4)
