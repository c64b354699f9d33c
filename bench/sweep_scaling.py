"""Sweep scaling: the same ``sweep_flow`` on 1 and on 2 Dask workers, and what Prefect adds per trial.

Run from the repository root, in the project's virtualenv::

    python bench/sweep_scaling.py                    # 8 trials of ~3.5 s, 1 round (~2 min here)
    python bench/sweep_scaling.py --quick            # smoke test: 4 short trials (~35 s)
    python bench/sweep_scaling.py --repeat 3 --epochs-per-task 1 --json s.json

What is measured
----------------
A sweep of 8 trials (``--quick``: 4), the grid ``lr x num_units`` of
``prefect_torch.examples:make_net`` (``verbose=0``) on ``make_data(n_samples)``, each trial a
fixed number of epochs with ``Checkpoint(monitor=None)`` committing every epoch; the trial
takes ~3.5 s of training on one core (``--quick``: ~0.5 s). Two contenders, each on a cluster
of 1 and of 2 workers (four runs a round):

* ``sweep_flow``  -- ``sweep_flow(..., dask_address=<the cluster>, epochs_per_task=...)``: every
  trial a ``train-trial`` task run on a Dask worker, its epochs nested task runs, the sweep's
  table artifact updated as trials end. A fresh checkpoint root per run, so no trial is skipped.
* ``plain``       -- the same trials as plain Dask tasks (``client.submit``), no Prefect: in the
  worker, the same ``prepare_net`` + data loader (so the same Checkpoint commits, into a fresh
  root) and ``net.fit``.

Both run in the same Dask workers, so with the same torch threads (Dask's nanny sets
``OMP_NUM_THREADS=1``; the bench prints what the workers report). ``plain`` on 2 workers shows
what this machine gives two independent trainings (memory bandwidth, clock, the other
processes), the ceiling the sweep's speed-up is compared with.

Timing. ``time.perf_counter()`` around the ``sweep_flow`` call (flow start to return: the
*sweep wall time*) and around submitting and gathering the plain tasks (the *plain wall time*);
in each plain task, around building the net, loading the data and ``net.fit`` (the *plain
trial time*). From the Prefect API after each sweep: each ``trial-*`` task run's start and end
(the *trial task time*: the engine in the worker, loading data, ``fit_in_flow``, ``trial.json``)
and the number of epoch task runs. Per-trial orchestration overhead, on k workers, against the
plain contender on the same k workers:

* task view  -- median over the trials of (trial task time - plain trial time of that trial);
* sweep view -- (sweep wall - plain wall) * k / trials: everything the sweep adds, the flow's
  start and end, dispatch and the artifact updates included, as worker-seconds per trial; with
  the flow's *lead* (call to the first trial's start) and *tail* (last trial's end to return).

Dask's task stream of each run checks that every trial ran as one task on that run's cluster
and gives each task's compute time (for the sweep: Prefect's task engine in the worker too).
The bench's own Dask clients are not the process's default client: prefect-dask's
``DaskTaskRunner(address=...)`` connects to the default client's cluster when there is one.

CPU. Around every run the bench reads the CPU time of the Dask workers (``client.run``), of its
own process (the flow engine, the Dask schedulers and clients), of its local Prefect server and
of the whole machine (``/proc``; Linux), and prints them as shares of ``wall * CPUs``: on a
2-core machine the server and the flow process compete with the two training workers. Runs
during which other processes kept more than 15% of the CPUs busy are named in a note.

Start-up, printed apart and never timed with the runs: each ``LocalCluster(n_workers=k,
threads_per_worker=1, processes=True)`` starts once, before the rounds (while the local server
starts, so both figures are inflated by sharing the CPUs); a ``client.run`` imports torch,
prefect_dask and prefect_torch in the workers and trains a tiny net; then an untimed warm-up
sweep and warm-up plain tasks (Prefect's first task run in a worker pays its engine's start).

``--repeat`` rounds; in each round every contender runs once, in an order rotated from round to
round. Tables show the best and the median of the rounds (the same figure with one round).

Settings as in ``bench/orchestration_overhead.py``: flow heartbeats off, run logs to the API
off unless ``--api-logs``, Prefect's console lines limited to warnings (in the workers too)
unless ``--console-logs``; the workers get the settings through their environment. By default
the bench starts its own ``prefect server start`` (a fresh SQLite database in a temporary
``PREFECT_HOME``), as that bench does; ``--api-url URL`` uses a running server instead.

Target (from the issue): sweep_flow's speed-up from 1 to 2 workers >= 1.6x. Printed, with
plain's speed-up beside it, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prefect
import torch
from common import (
    Server,
    Timing,
    add_common_options,
    print_rule,
    quiet_console,
    source_version,
    versions_line,
    with_server,
)
from distributed import Client, LocalCluster, get_task_stream
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_LOGGING_TO_API_ENABLED,
    temporary_settings,
)

import prefect_torch
from prefect_torch.orchestration import sweep_flow
from prefect_torch.orchestration.trials import TRIAL_RECORD, plan_trials

NET_FACTORY = "prefect_torch.examples:make_net"
DATA = "prefect_torch.examples:make_data"
NET_PARAMS = {"verbose": 0}
WORKERS = (1, 2)
SPEEDUP_TARGET = 1.6  # sweep_flow, 1 -> 2 workers
API_WAIT = 30.0  # seconds to wait for the server to record the trial task runs' ends (events)
SWEEP, PLAIN = "sweep_flow", "plain"
NOISY_SHARE = 0.15  # a run is noisy when other processes kept this share of the machine's CPUs busy


@dataclass(frozen=True)
class Setup:
    name: str
    grid: dict[str, list[Any]]
    n_samples: int
    epochs: int

    @property
    def trials(self) -> int:
        return len(plan_trials(self.grid, "."))


FULL = Setup("full", {"lr": [0.2, 0.1, 0.05, 0.02], "num_units": [20, 40]}, n_samples=100_000, epochs=10)
QUICK = Setup("quick", {"lr": [0.1, 0.05], "num_units": [20, 40]}, n_samples=30_000, epochs=5)
WARM_UP = Setup("warm-up", {"lr": [0.1, 0.05, 0.02, 0.01]}, n_samples=1_000, epochs=2)


@dataclass
class Run:
    """One contender's run on one cluster: its wall time, per-trial times, CPU seconds."""

    wall: float
    trial_seconds: dict[str, float]  # sweep: trial task run (Prefect API); plain: build + data + fit
    epochs: dict[str, int | None]
    epoch_tasks: int | None = None  # sweep: epoch task runs of all trials
    lead: float = 0.0  # sweep: from the flow call to the first trial task's start
    tail: float = 0.0  # sweep: from the last trial task's end to the flow's return
    dask_seconds: list[float] = field(default_factory=list)  # compute time of each Dask task (task stream)
    cpu_workers: float = 0.0
    cpu_bench: float = 0.0
    cpu_server: float | None = None
    cpu_machine: float | None = None  # busy CPU seconds of the whole machine (/proc/stat), ours included


@dataclass
class Series:
    wall: Timing = field(default_factory=Timing)
    runs: list[Run] = field(default_factory=list)


# -- in the Dask workers -------------------------------------------------------------------------------
def warm_worker() -> dict[str, Any]:
    """Import what a trial needs and train a tiny net once; report the worker's torch threads."""
    import prefect_dask  # noqa: F401  (the task runner's module, unpickled with every trial)

    from prefect_torch.examples import make_data, make_net
    from prefect_torch.orchestration import fit_in_flow  # noqa: F401

    quiet_console()
    X, y = make_data(n_samples=200)
    make_net(max_epochs=1, verbose=0).fit(X, y)
    return {"threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def cpu_seconds() -> float:
    """CPU time of the calling process, all its threads (user + system)."""
    return time.process_time()


def machine_busy_seconds() -> float | None:
    """CPU seconds the machine's CPUs spent busy so far, all processes (Linux ``/proc/stat``), else ``None``."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def plain_trial(name: str, params: dict[str, Any], checkpoint_dir: str, setup: Setup) -> dict[str, Any]:
    """The trial without Prefect: the same net (and Checkpoint) and data as ``train_trial``, ``net.fit``."""
    from prefect_torch.orchestration.flows import load_object, prepare_net

    start = time.perf_counter()
    net = prepare_net(NET_FACTORY, {**NET_PARAMS, **params}, checkpoint_dir, setup.epochs)
    X, y = load_object(DATA)(n_samples=setup.n_samples)
    net.fit(X, y)
    return {"trial": name, "seconds": time.perf_counter() - start, "epochs": len(net.history),
            "threads": torch.get_num_threads()}


# -- the contenders ------------------------------------------------------------------------------------
class Cluster:
    """A ``LocalCluster`` of ``workers`` single-threaded processes, started and warmed up."""

    def __init__(self, workers: int):
        self.workers = workers
        began = time.perf_counter()
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0")
        # not the default client: prefect-dask's DaskTaskRunner(address=...) would use the default
        # client's cluster instead of the address it is given (distributed.get_client() comes first)
        self.client = Client(self.cluster, set_as_default=False)
        self.client.wait_for_workers(workers)
        self.start_seconds = time.perf_counter() - began
        began = time.perf_counter()
        self.warm = list(self.client.run(warm_worker).values())
        self.import_seconds = time.perf_counter() - began
        self.warm_up_seconds: dict[str, float] = {}

    @property
    def address(self) -> str:
        return self.cluster.scheduler_address

    def cpu_seconds(self) -> float:
        return sum(self.client.run(cpu_seconds).values())

    def close(self) -> None:
        logging.getLogger("distributed").setLevel(logging.WARNING)  # no INFO lines of the shutdown
        self.client.close()
        self.cluster.close()


def run_sweep(cluster: Cluster, setup: Setup, root: str, epochs_per_task: int | str) -> Run:
    called, start = time.time(), time.perf_counter()
    state = sweep_flow(NET_FACTORY, DATA, setup.grid, root, max_epochs=setup.epochs, net_params=NET_PARAMS,
                       data_params={"n_samples": setup.n_samples}, dask_address=cluster.address,
                       epochs_per_task=epochs_per_task, return_state=True)
    wall, returned = time.perf_counter() - start, time.time()
    if not state.is_completed():
        raise RuntimeError(f"the sweep on {cluster.workers} worker(s) ended {state.type.value}: "
                           f"{state.message}")
    result = state.result()
    rows = {row["trial"]: row for row in result["trials"]}
    not_run = [n for n, row in rows.items() if row["state"] != "Completed"]
    if not_run:
        raise RuntimeError(f"trials not trained by this run (fresh root {root}): {not_run}")
    missing = [t.name for t in plan_trials(setup.grid, root)
               if not Path(t.checkpoint_dir, TRIAL_RECORD).exists()]
    if missing:
        raise RuntimeError(f"no {TRIAL_RECORD} for {missing}")
    spans, epoch_tasks = trial_task_runs(state.state_details.flow_run_id, len(rows))
    return Run(wall, {n: end - begin for n, (begin, end) in spans.items()},
               {n: row["epochs"] for n, row in rows.items()}, epoch_tasks,
               lead=min(b for b, _ in spans.values()) - called, tail=returned - max(e for _, e in spans.values()))


def trial_task_runs(flow_run_id: Any, trials: int) -> tuple[dict[str, tuple[float, float]], int]:
    """The trial task runs' (start, end) in POSIX seconds, by trial name, and the number of epoch
    task runs, as the Prefect server recorded them (from the workers' events: it may lag a little)."""
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + API_WAIT
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_runs,
                                         task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="trial-")))
            ended = {r.name.removeprefix("trial-"): (r.start_time.timestamp(), r.end_time.timestamp())
                     for r in runs if r.start_time and r.end_time and r.state and r.state.is_completed()}
            if len(ended) == trials:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"after {API_WAIT:.0f} s the API has {len(ended)} of {trials} trial "
                                   "task runs completed with start and end times")
            time.sleep(0.5)
        epoch_tasks, offset = 0, 0
        while True:
            page = client.read_task_runs(flow_run_filter=flow_runs, limit=200, offset=offset,
                                         task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="epoch")))
            epoch_tasks += len(page)
            offset += len(page)
            if len(page) < 200:
                break
    return ended, epoch_tasks


def run_plain(cluster: Cluster, setup: Setup, root: str) -> Run:
    trials = plan_trials(setup.grid, root)
    start = time.perf_counter()
    futures = [cluster.client.submit(plain_trial, t.name, t.params, t.checkpoint_dir, setup, pure=False)
               for t in trials]
    results = cluster.client.gather(futures)
    wall = time.perf_counter() - start
    return Run(wall, {r["trial"]: r["seconds"] for r in results}, {r["trial"]: r["epochs"] for r in results})


def run_one(contender: str, cluster: Cluster, setup: Setup, workdir: Path, epochs_per_task: int | str,
            server: Server) -> Run:
    root = tempfile.mkdtemp(prefix=f"{contender}-{cluster.workers}-", dir=workdir)
    before = cluster.cpu_seconds(), time.process_time(), server.cpu_seconds(), machine_busy_seconds()
    try:
        with get_task_stream(client=cluster.client) as stream:
            if contender == SWEEP:
                run = run_sweep(cluster, setup, root, epochs_per_task)
            else:
                run = run_plain(cluster, setup, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    run.dask_seconds = [sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                        for t in stream.data]
    if len(run.dask_seconds) != len(run.epochs):  # every trial one Dask task, on this cluster
        raise RuntimeError(f"{contender}: {len(run.dask_seconds)} Dask tasks ran on the "
                           f"{cluster.workers}-worker cluster for {len(run.epochs)} trials")
    run.cpu_workers = cluster.cpu_seconds() - before[0]
    run.cpu_bench = time.process_time() - before[1]
    now = server.cpu_seconds()
    run.cpu_server = None if now is None or before[2] is None else now - before[2]
    busy = machine_busy_seconds()
    run.cpu_machine = None if busy is None or before[3] is None else busy - before[3]
    return run


def schedule(round_: int) -> list[tuple[str, int]]:
    runs = [(c, k) for c in (SWEEP, PLAIN) for k in WORKERS]
    shift = round_ % len(runs)
    return runs[shift:] + runs[:shift]


@contextlib.contextmanager
def clusters() -> Iterator[dict[int, Cluster]]:
    started: dict[int, Cluster] = {}
    try:
        for k in WORKERS:
            started[k] = Cluster(k)
        yield started
    finally:
        for cluster in started.values():
            cluster.close()


# -- reporting -----------------------------------------------------------------------------------------
def best_median(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))} ({fmt.format(statistics.median(values))})"


def overheads(sweep: Series, plain: Series, workers: int, trials: int) -> dict[str, float]:
    """Per-trial overhead of the sweep against plain on the same workers, medians of the rounds."""
    m = statistics.median
    pairs = list(zip(sweep.runs, plain.runs))
    task = [m(s.trial_seconds[n] - p.trial_seconds[n] for n in p.trial_seconds) for s, p in pairs]
    plain_trial = [m(p.trial_seconds.values()) for p in plain.runs]
    dask = [m(s.dask_seconds) - m(p.dask_seconds) for s, p in pairs]
    plain_dask = [m(p.dask_seconds) for p in plain.runs]
    per_trial = [(s.wall - p.wall) * workers / trials for s, p in pairs]
    plain_per_trial = [p.wall * workers / trials for p in plain.runs]
    return {
        "plain_trial_s": m(plain_trial), "trial_task_s": m(m(s.trial_seconds.values()) for s in sweep.runs),
        "task_overhead_s": m(task), "task_overhead_pct": 100 * m(task) / m(plain_trial),
        "plain_dask_task_s": m(plain_dask), "sweep_dask_task_s": m(m(s.dask_seconds) for s in sweep.runs),
        "dask_overhead_s": m(dask), "dask_overhead_pct": 100 * m(dask) / m(plain_dask),
        "plain_wall_s": plain.wall.median, "sweep_wall_s": sweep.wall.median,
        "plain_wall_per_trial_s": m(plain_per_trial), "sweep_overhead_s": m(per_trial),
        "sweep_overhead_pct": 100 * m(per_trial) / m(plain_per_trial),
        "outside_tasks_per_trial_s": m((s.wall * workers - sum(s.trial_seconds.values())) / trials
                                       for s in sweep.runs),
        "epoch_tasks_per_trial": m(r.epoch_tasks or 0 for r in sweep.runs) / trials,
        "lead_s": m(r.lead for r in sweep.runs), "tail_s": m(r.tail for r in sweep.runs),
    }


@dataclass
class Measured:
    """Everything a bench run measured: the rounds' runs and the clusters' start-up."""

    series: dict[tuple[str, int], Series]
    startup: dict[int, dict[str, Any]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK.trials} trials of {QUICK.epochs} short epochs, 1 round")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds (default 1: ~2 min in all on 2 cores); best and median are shown")
    parser.add_argument("--epochs-per-task", default="auto",
                        help="sweep_flow's epochs_per_task: 'auto' (its default) or a whole number")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.epochs_per_task != "auto":
        if not args.epochs_per_task.isdigit() or int(args.epochs_per_task) < 1:
            parser.error("--epochs-per-task: 'auto' or a whole number >= 1")
        args.epochs_per_task = int(args.epochs_per_task)
    repeat = 1 if args.quick else args.repeat
    setup = QUICK if args.quick else FULL
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
    if not args.console_logs:
        quiet_console()

    def measure_and_report(server: Server, began: float) -> int:
        print_header(args, setup, repeat)
        measured = measure(args, server, setup, repeat)
        server.stop()  # its log's counts are reported
        print(f"measured in {time.perf_counter() - began:.0f} s (server start included); "
              f"load average {os.getloadavg()[0]:.1f} (1 min) at the end")
        report(args, server, setup, repeat, measured)
        return 0

    return with_server(args, measure_and_report)


def print_header(args: argparse.Namespace, setup: Setup, repeat: int) -> None:
    print(f"sweep scaling: a {setup.trials}-trial sweep_flow on "
          f"{' and on '.join(map(str, WORKERS))} Dask workers")
    print(versions_line())
    print(f"{setup.trials} trials: {' x '.join(f'{k} {v}' for k, v in setup.grid.items())}; make_net on "
          f"make_data({setup.n_samples:,}), {setup.epochs} epochs each, Checkpoint every epoch; "
          f"epochs_per_task={args.epochs_per_task!r}; {repeat} round(s)")


def worker_environment(args: argparse.Namespace, api_url: str) -> None:
    """The settings the Dask workers start with (they are spawned with this process's environment)."""
    os.environ.update(PREFECT_API_URL=api_url,
                      PREFECT_LOGGING_TO_API_ENABLED="true" if args.api_logs else "false")


def measure(args: argparse.Namespace, server: Server, setup: Setup, repeat: int) -> Measured:
    """Start and warm up the clusters (while the server starts), then run the rounds."""
    worker_environment(args, server.api_url)
    with contextlib.ExitStack() as stack:
        stack.enter_context(temporary_settings(updates={
            PREFECT_API_URL: server.api_url,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_TO_API_ENABLED: args.api_logs,
        }))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sweep-scaling-", dir=args.dir)))
        pool = stack.enter_context(clusters())
        server.wait_healthy()
        print(f"Prefect API {server.api_url} "
              + (f"(local server, healthy after {server.start_seconds:.1f} s)" if server.own else "(given)")
              + f"; heartbeats off; run logs to the API {'on' if args.api_logs else 'off'}")
        for cluster in pool.values():
            for contender in (SWEEP, PLAIN):
                start = time.perf_counter()
                run_one(contender, cluster, WARM_UP, workdir, args.epochs_per_task, server)
                cluster.warm_up_seconds[contender] = time.perf_counter() - start

        series = {(c, k): Series() for c in (SWEEP, PLAIN) for k in WORKERS}
        for round_ in range(repeat):
            for contender, k in schedule(round_):
                run = run_one(contender, pool[k], setup, workdir, args.epochs_per_task, server)
                if len(run.epochs) != setup.trials or any(e != setup.epochs for e in run.epochs.values()):
                    raise RuntimeError(f"{contender} on {k} worker(s): epochs per trial {run.epochs}, "
                                       f"not {setup.epochs} for each of {setup.trials} trials")
                series[(contender, k)].wall.seconds.append(run.wall)
                series[(contender, k)].runs.append(run)
        startup = {k: {"cluster_start_s": c.start_seconds, "worker_imports_s": c.import_seconds,
                       "warm_up_sweep_s": c.warm_up_seconds[SWEEP], "warm_up_plain_s": c.warm_up_seconds[PLAIN],
                       "workers": c.warm} for k, c in pool.items()}
    return Measured(series, startup)


def report(args: argparse.Namespace, server: Server, setup: Setup, repeat: int, measured: Measured) -> None:
    series = measured.series
    print_rule("start-up, excluded from the timings: s")
    print(f"{'workers':<9}{'cluster start':>15}{'imports':>9}{'warm-up sweep':>15}{'warm-up plain':>15}"
          f"{'torch threads':>15}")
    for k, up in measured.startup.items():
        threads = ",".join(str(w["threads"]) for w in up["workers"])
        print(f"{k:<9}{up['cluster_start_s']:>15.1f}{up['worker_imports_s']:>9.1f}"
              f"{up['warm_up_sweep_s']:>15.1f}{up['warm_up_plain_s']:>15.1f}{threads:>15}")
    print(f"""cluster start: LocalCluster + Client, while the Prefect server starts; imports: client.run
  importing torch, prefect_dask, prefect_torch and one tiny fit; warm-ups: {WARM_UP.trials} trials of
  {WARM_UP.epochs} epochs on make_data({WARM_UP.n_samples:,})""")

    print_rule(f"wall time of the {setup.trials} trials: best (median) s of {repeat} round(s)")
    print(f"{'contender':<12}{'1 worker':>16}{'2 workers':>16}{'speed-up':>16}")
    speedups: dict[str, dict[str, float]] = {}
    for contender in (SWEEP, PLAIN):
        one, two = series[(contender, 1)].wall, series[(contender, 2)].wall
        ratios = [a / b for a, b in zip(one.seconds, two.seconds)]
        speedups[contender] = {"best": one.best / two.best, "median": statistics.median(ratios)}
        shown = f"{speedups[contender]['best']:.2f}x ({speedups[contender]['median']:.2f}x)"
        print(f"{contender:<12}{best_median(one.seconds):>16}{best_median(two.seconds):>16}{shown:>16}")
    print("""speed-up: best on 1 worker / best on 2 workers (median of the rounds' ratios); plain: the same
  trials as Dask tasks without Prefect, what this machine allows""")

    per_trial = {k: overheads(series[(SWEEP, k)], series[(PLAIN, k)], k, setup.trials) for k in WORKERS}
    print_rule("per-trial overhead, task view: sweep_flow's trial tasks against plain on the same workers, "
               "median s")
    print(f"{'workers':<9}{'plain trial':>13}{'trial task':>12}{'overhead':>10}{'%':>8}"
          f"{'plain Dask task':>17}{'sweep Dask task':>17}{'overhead':>10}{'%':>8}{'epoch tasks':>13}")
    for k, o in per_trial.items():
        print(f"{k:<9}{o['plain_trial_s']:>13.2f}{o['trial_task_s']:>12.2f}{o['task_overhead_s']:>10.2f}"
              f"{o['task_overhead_pct']:>7.1f}%{o['plain_dask_task_s']:>17.2f}{o['sweep_dask_task_s']:>17.2f}"
              f"{o['dask_overhead_s']:>10.2f}{o['dask_overhead_pct']:>7.1f}%"
              f"{o['epoch_tasks_per_trial']:>13.1f}")
    print("""plain trial: build, data and net.fit timed in the plain Dask task; trial task: the trial-* task
  run's end - start in the Prefect API; overhead: median over the trials of the difference, trial by trial
Dask task: compute time of each Dask task (Dask's task stream; the sweep's includes Prefect's task
  engine in the worker); overhead: the difference of the medians; epoch tasks: epoch task runs per trial""")

    print_rule("per-trial overhead, sweep view: the whole sweep against the plain tasks on the same workers, s")
    print(f"{'workers':<9}{'plain wall':>12}{'sweep wall':>12}{'plain per trial':>17}{'overhead per trial':>20}"
          f"{'%':>8}{'outside trial tasks':>21}{'lead':>7}{'tail':>7}")
    for k, o in per_trial.items():
        print(f"{k:<9}{o['plain_wall_s']:>12.2f}{o['sweep_wall_s']:>12.2f}{o['plain_wall_per_trial_s']:>17.2f}"
              f"{o['sweep_overhead_s']:>20.2f}{o['sweep_overhead_pct']:>7.1f}%"
              f"{o['outside_tasks_per_trial_s']:>21.2f}{o['lead_s']:>7.2f}{o['tail_s']:>7.2f}")
    print("""per trial: wall * workers / trials (worker-seconds); overhead per trial: (sweep wall - plain wall)
  * workers / trials; outside trial tasks: (sweep wall * workers - sum of trial task times) / trials:
  the flow's start and end, dispatch to the workers, a worker idle at the end; lead: from the flow call to
  the first trial task's start; tail: from the last trial task's end to the flow's return (medians)""")

    cpu = cpu_table(series)

    print_rule("target (from the issue)")
    value = speedups[SWEEP]["best"]
    target = {"target": f"sweep_flow speed-up 1 -> 2 workers >= {SPEEDUP_TARGET:.1f}x", "value": value,
              "pass": value >= SPEEDUP_TARGET, "plain_speedup": speedups[PLAIN]["best"]}
    print(f"{target['target']:<50}{value:>6.2f}x  {'PASS' if target['pass'] else 'MISS'}"
          f"   (plain: {speedups[PLAIN]['best']:.2f}x)")
    if args.quick:
        print(f"(--quick: {setup.trials} short trials, 1 round: the fixed costs weigh more than in the "
              "full run)")

    print_rule("sanity")
    print(f"""every trial of every run trained {setup.epochs} epochs: yes; each run: one Dask task per trial
  on its own cluster; sweeps: every trial Completed by the run (none skipped), {TRIAL_RECORD} written""")
    counts = server.counts
    if counts is not None:
        print(f"local server log: {counts['database is locked']} 'database is locked', "
              f"{counts['503']} '503' lines")

    if args.json:
        payload = {
            "meta": {"python": platform.python_version(), "torch": torch.__version__,
                     "prefect": prefect.__version__, "prefect_torch": prefect_torch.__version__,
                     "source": source_version(), "cpus": os.cpu_count(), "repeat": repeat,
                     "api_url": server.api_url, "own_server": server.own, "api_logs": args.api_logs,
                     "epochs_per_task": args.epochs_per_task,
                     "setup": {**vars(setup), "trials": setup.trials}, "argv": sys.argv[1:]},
            "startup": {str(k): v for k, v in measured.startup.items()},
            "runs": [{"contender": c, "workers": k, "wall_seconds": s.wall.seconds,
                      "trial_seconds": [r.trial_seconds for r in s.runs],
                      "dask_task_seconds": [r.dask_seconds for r in s.runs],
                      "epoch_tasks": [r.epoch_tasks for r in s.runs],
                      "lead_seconds": [r.lead for r in s.runs], "tail_seconds": [r.tail for r in s.runs],
                      "cpu_workers_seconds": [r.cpu_workers for r in s.runs],
                      "cpu_bench_seconds": [r.cpu_bench for r in s.runs],
                      "cpu_server_seconds": [r.cpu_server for r in s.runs],
                      "cpu_machine_seconds": [r.cpu_machine for r in s.runs]}
                     for (c, k), s in series.items()],
            "speedup": speedups, "per_trial": {str(k): v for k, v in per_trial.items()},
            "cpu": {c: {str(k): v for k, v in by.items()} for c, by in cpu.items()},
            "target": target, "server_log": counts,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, default=str)
        print(f"\nwrote {args.json}")


def cpu_table(series: dict[tuple[str, int], Series]) -> dict[str, dict[int, dict[str, Any]]]:
    """Print (and return) the CPU seconds of each contender's runs, medians of the rounds."""
    print_rule("CPU during the runs: median CPU-seconds (busy: share of wall * CPUs)")
    print(f"{'contender':<12}{'workers':>8}{'wall':>8}{'Dask workers':>14}{'bench process':>15}"
          f"{'Prefect server':>16}{'ours busy':>11}{'other processes':>17}{'machine busy':>14}")
    m = statistics.median
    capacity = os.cpu_count() or 1
    cpu: dict[str, dict[int, dict[str, Any]]] = {}
    for (contender, k), s in series.items():
        servers = [r.cpu_server for r in s.runs if r.cpu_server is not None]
        machine = [r.cpu_machine for r in s.runs if r.cpu_machine is not None]
        others = [o for r in s.runs if (o := others_seconds(r)) is not None]
        c: dict[str, Any] = {
            "wall_s": s.wall.median, "workers_s": m(r.cpu_workers for r in s.runs),
            "bench_s": m(r.cpu_bench for r in s.runs), "server_s": m(servers) if servers else None,
            "others_s": m(others) if others else None, "machine_s": m(machine) if machine else None}
        c["ours_busy"] = (c["workers_s"] + c["bench_s"] + (c["server_s"] or 0)) / (c["wall_s"] * capacity)
        c["machine_busy"] = None if c["machine_s"] is None else c["machine_s"] / (c["wall_s"] * capacity)
        cpu.setdefault(contender, {})[k] = c
        shown = {key: "n/a" if c[key] is None else f"{c[key]:.1f}" for key in ("server_s", "others_s")}
        busy = "n/a" if c["machine_busy"] is None else f"{c['machine_busy'] * 100:.0f}%"
        print(f"{contender:<12}{k:>8}{c['wall_s']:>8.1f}{c['workers_s']:>14.1f}{c['bench_s']:>15.1f}"
              f"{shown['server_s']:>16}{c['ours_busy'] * 100:>10.0f}%{shown['others_s']:>17}{busy:>14}")
    print("""bench process: the flow engine, the Dask schedulers and clients; Prefect server: own server only;
other processes: the machine's busy CPU time (/proc/stat) less ours (the nannies, the idle cluster's
  workers, anything else running)""")
    noisy = [f"{c} {k} worker(s) round {i + 1} ({share:.0%})" for (c, k), s in series.items()
             for i, r in enumerate(s.runs) if (share := (others_seconds(r) or 0) / (r.wall * capacity)) > NOISY_SHARE]
    if noisy:
        print(f"note: noisy runs, other processes busy > {NOISY_SHARE:.0%} of the CPUs: {', '.join(noisy)}")
    return cpu


def others_seconds(run: Run) -> float | None:
    """CPU seconds of the machine's processes other than ours during ``run`` (Linux), else ``None``."""
    if run.cpu_machine is None:
        return None
    return run.cpu_machine - run.cpu_workers - run.cpu_bench - (run.cpu_server or 0)


if __name__ == "__main__":
    sys.exit(main())
