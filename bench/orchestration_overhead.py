"""Orchestration overhead: the same fit plain (``net.fit``) and as a Prefect flow (``fit_in_flow``).

Run from the repository root, in the project's virtualenv::

    python bench/orchestration_overhead.py                  # both epoch lengths, 3 interleaved rounds
    python bench/orchestration_overhead.py --quick          # smoke test: short epochs only, 1 round
    python bench/orchestration_overhead.py --repeat 5 --api-url http://127.0.0.1:4200/api --json o.json

What is measured
----------------
Every contender trains the same classifier (``prefect_torch.examples.MyModule`` on
``make_data``; SGD lr=0.1, batch 128, the default ``ValidSplit(5)``, ``verbose=0``) from the same
seed, with ``Checkpoint(monitor=None)`` committing every epoch into a fresh folder:

* ``plain``          -- ``net.fit(X, y)``;
* ``flow, ept=1``    -- inside a ``@flow``, ``fit_in_flow(net, X, y, epochs_per_task=1)``: one task
  run per epoch, the commit inside it, the three artifacts created and updated (a fresh checkpoint
  folder, so nothing is resumed; its ``LoadInitState`` finds nothing to load);
* ``flow, ept=auto`` -- the same with ``epochs_per_task="auto"`` (short epochs only): after its first
  task the driver groups epochs so that Prefect's share stays near 5%.

Two epoch lengths, tuned so the plain epoch (training + validation + commit) takes about 0.05 s
and about 1 s on a 2-core machine with one torch thread; the tables print what they really took.

Timing. ``time.perf_counter()`` around ``net.fit`` (plain) and around ``fit_in_flow`` inside the
flow body (flow): the *fit* time. Around the flow call as a whole: the *wall* time. The record
``fit_in_flow`` returns gives two more (``timings``): the time inside the task bodies (the epochs
and their commits) and the artifacts' final flush. Fixed costs, printed apart, never spread
over the epochs:

* Prefect's per-flow start/stop (create, start and finish the flow run): wall - fit;
* ``fit_in_flow``'s setup (claim the checkpoint folder, create the three artifacts, release): the
  fit time of a 0-epoch ``fit_in_flow`` less its flush, less that of a 0-epoch ``net.fit`` (both
  pay the net's initialization and data split);
* the artifacts' flush at the end of a run with epochs (it includes waiting for the helper
  thread, which pauses up to a second between updates).

The per-epoch figure of a round is (fit - fixed costs) / epochs, with the plain 0-epoch fit time
as the plain fixed cost; overhead = flow - plain, ratio = flow / plain. The overhead is split
into *slower epochs* (task bodies per epoch less the plain epoch: the commit's fsync and the
CPU shared with Prefect's threads and server) and *between tasks* (the rest: Prefect's task
engine, the driver's bookkeeping). A last table shows the CPU time, per epoch, of this process's
threads other than the training thread and of the local server's process (``/proc``; Linux).

One untimed warm-up of every contender runs first (the first flow in a process pays Prefect's
one-off start-up). Then ``--repeat`` rounds; in each round every contender of every epoch length
runs once, in an order rotated from round to round, so machine noise hits all alike. The tables
show the best and the median of the rounds; targets use the best (the steadiest figure on a
shared machine), the median is shown in brackets.

Settings. ``torch.set_num_threads(1)`` by default (``--threads``): Prefect's background threads
(events, artifact updates) and the local server compete with training for the 2 cores, and a
second torch thread made epochs both slower and much noisier there. Flow heartbeats are off
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=None`` through ``temporary_settings``: their ~1 s join at
flow exit is a fixed cost anyway); so are run logs to the API unless ``--api-logs``; Prefect's
console log lines are limited to warnings unless ``--console-logs``.

The Prefect API. By default the bench starts ``prefect server start --no-ui --analytics-off`` on
a free loopback port, with a fresh temporary ``PREFECT_HOME`` (so a fresh SQLite database: the
start takes 15-30 s here), and stops it and removes the home at the end; the server's log is
scanned for "database is locked" (SQLite write contention, which costs the client 2 s retries).
``--api-url URL`` uses a running server instead.

Targets (from the issue): flow / plain per epoch <= 1.10 for 1 s epochs (epochs_per_task=1);
<= 1.5 for 0.05 s epochs with epochs_per_task="auto".

Sanity: all contenders of an epoch length end with identical weights (``torch.equal``): the
orchestration changes where the epochs run, not what they compute.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
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
from prefect import flow
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_LOGGING_TO_API_ENABLED,
    temporary_settings,
)

import prefect_torch
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration import fit_in_flow

LR = 0.1
BATCH_SIZE = 128
N_FEATURES = 10
LONG_RATIO_TARGET = 1.10  # flow / plain per epoch, 1 s epochs, epochs_per_task=1
AUTO_RATIO_TARGET = 1.5  # flow / plain per epoch, 0.05 s epochs, epochs_per_task="auto"
NOISY_SPREAD = 1.5

PLAIN = "plain"


def flow_name(epochs_per_task: int | str) -> str:
    return f"flow, ept={epochs_per_task}"


@dataclass(frozen=True)
class Case:
    name: str
    n_samples: int
    num_units: int
    epochs: int
    flow_variants: tuple[int | str, ...]


SHORT = Case("0.05 s", n_samples=6_000, num_units=10, epochs=40, flow_variants=(1, "auto"))
LONG = Case("1 s", n_samples=180_000, num_units=256, epochs=8, flow_variants=(1,))
CASES = (SHORT, LONG)
QUICK_CASES = (Case("0.05 s", n_samples=6_000, num_units=10, epochs=10, flow_variants=(1, "auto")),)


@dataclass
class Run:
    """One fit: its time inside fit, the wall time around the flow (the same for plain), tasks."""

    fit: float
    wall: float
    tasks: int | None
    epochs: int
    in_tasks: float = 0.0  # flows: seconds inside the task bodies (the epochs and their commits)
    close: float = 0.0  # flows: seconds fit_in_flow spent flushing its artifacts at the end
    cpu_threads: float = 0.0  # CPU seconds of this process's other threads (Prefect's workers, helpers)
    cpu_server: float | None = None  # CPU seconds of the local server's process
    params: list[torch.Tensor] = field(repr=False, default_factory=list)


@dataclass
class Series:
    contender: str
    epochs: int
    fit: Timing = field(default_factory=Timing)
    wall: Timing = field(default_factory=Timing)
    tasks: list[int | None] = field(default_factory=list)
    in_tasks: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    cpu_threads: list[float] = field(default_factory=list)
    cpu_server: list[float | None] = field(default_factory=list)

    def per_epoch(self, fixed: float) -> list[float]:
        """Seconds per epoch of each round: fit time less the fixed costs and this run's close."""
        return [(f - fixed - c) / self.epochs for f, c in zip(self.fit.seconds, self.close)]


# -- the contenders ---------------------------------------------------------------------------------
DATA: dict[str, tuple[Any, Any]] = {}  # case name -> (X, y); flows take the name, never the arrays
CASES_BY_NAME: dict[str, Case] = {}


def make_net(case: Case, epochs: int, dirname: str) -> NeuralNetClassifier:
    return NeuralNetClassifier(
        MyModule, module__num_units=case.num_units, module__n_features=N_FEATURES, max_epochs=epochs,
        lr=LR, batch_size=BATCH_SIZE, verbose=0, callbacks=[Checkpoint(monitor=None, dirname=dirname)])


def params_of(net: NeuralNetClassifier) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.module_.parameters()]


def run_plain(case: Case, epochs: int, dirname: str, seed: int) -> Run:
    X, y = DATA[case.name]
    net = make_net(case, epochs, dirname)
    gc.collect()
    torch.manual_seed(seed)
    start = time.perf_counter()
    net.fit(X, y)
    seconds = time.perf_counter() - start
    return Run(fit=seconds, wall=seconds, tasks=None, epochs=len(net.history), params=params_of(net))


_FLOW_PARAMS: dict[str, list[torch.Tensor]] = {}


@flow(name="orchestration-overhead", persist_result=False)
def overhead_flow(case_name: str, epochs: int, epochs_per_task: int | str, dirname: str, seed: int) -> dict:
    case = CASES_BY_NAME[case_name]
    X, y = DATA[case_name]
    net = make_net(case, epochs, dirname)
    torch.manual_seed(seed)
    start = time.perf_counter()
    record = fit_in_flow(net, X, y, experiment=f"overhead-{case_name}", epochs_per_task=epochs_per_task)
    seconds = time.perf_counter() - start
    _FLOW_PARAMS[dirname] = params_of(net) if len(net.history) else []
    timings = record["timings"]  # what fit_in_flow measured itself: the task bodies, the final flush
    return {"fit": seconds, "tasks": record["tasks"], "epoch": record["epoch"],
            "in_tasks": sum(timings["task_seconds"]), "close": timings["close_seconds"]}


def run_flow(case: Case, epochs: int, epochs_per_task: int | str, dirname: str, seed: int) -> Run:
    gc.collect()
    start = time.perf_counter()
    result = overhead_flow(case.name, epochs, epochs_per_task, dirname, seed)
    wall = time.perf_counter() - start
    return Run(fit=result["fit"], wall=wall, tasks=result["tasks"], epochs=result["epoch"],
               in_tasks=result["in_tasks"], close=result["close"], params=_FLOW_PARAMS.pop(dirname))


def run_one(contender: str, case: Case, epochs: int, workdir: Path, seed: int,
            server: Server | None = None) -> Run:
    dirname = tempfile.mkdtemp(prefix="ckpt-", dir=workdir)
    server_cpu = server.cpu_seconds() if server is not None else None
    process_cpu, main_cpu = time.process_time(), time.thread_time()
    try:
        if contender == PLAIN:
            run = run_plain(case, epochs, dirname, seed)
        else:
            ept = contender.split("=", 1)[1]
            run = run_flow(case, epochs, int(ept) if ept.isdigit() else ept, dirname, seed)
    finally:
        shutil.rmtree(dirname, ignore_errors=True)
    run.cpu_threads = (time.process_time() - process_cpu) - (time.thread_time() - main_cpu)
    if server_cpu is not None and server is not None:
        now = server.cpu_seconds()
        run.cpu_server = None if now is None else now - server_cpu
    return run


# -- measuring -----------------------------------------------------------------------------------------
def contenders_of(case: Case) -> list[str]:
    return [PLAIN] + [flow_name(v) for v in case.flow_variants]


ZERO_FLOW = flow_name(1)  # 0 epochs: no task runs, so any epochs_per_task is the same


def schedule(cases: tuple[Case, ...], round_: int) -> list[tuple[Case, str, int]]:
    """This round's runs: every contender with the case's epochs, plus the 0-epoch runs, rotated."""
    runs = []
    for case in cases:
        runs += [(case, c, case.epochs) for c in contenders_of(case)]
        runs += [(case, PLAIN, 0), (case, ZERO_FLOW, 0)]
    shift = (round_ * 3) % len(runs)
    return runs[shift:] + runs[:shift]


def warm_up(cases: tuple[Case, ...], workdir: Path, seed: int) -> None:
    case = cases[0]
    for contender in contenders_of(case):
        run_one(contender, case, 2, workdir, seed)
    run_one(ZERO_FLOW, case, 0, workdir, seed)


def ms(values: list[float], scale: float = 1e3) -> str:
    """``best (median)`` of ``values`` in milliseconds."""
    return f"{min(values) * scale:.1f} ({statistics.median(values) * scale:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: only {QUICK_CASES[0].epochs} short epochs, 1 round")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds (default 3); the best and median are shown")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads(N) (default 1: leave a core to Prefect and its server)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before every fit")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    cases = QUICK_CASES if args.quick else CASES
    if not args.console_logs:
        quiet_console()

    return with_server(args, lambda server, began: measure_and_report(args, server, cases, repeat, began))


def measure_and_report(args: argparse.Namespace, server: Server, cases: tuple[Case, ...], repeat: int,
                       began: float) -> int:
    print("orchestration overhead: net.fit against fit_in_flow (epochs as Prefect task runs)")
    print(versions_line())
    print(f"torch threads {torch.get_num_threads()}, seed {args.seed}, {repeat} interleaved round(s); "
          f"SGD lr={LR}, batch {BATCH_SIZE}, Checkpoint(monitor=None) every epoch")
    for case in cases:
        print(f"{case.name} epochs: make_data({case.n_samples:,}, {N_FEATURES}), "
              f"MyModule(num_units={case.num_units}), {case.epochs} epochs")
        CASES_BY_NAME[case.name] = case
        DATA[case.name] = make_data(n_samples=case.n_samples, n_features=N_FEATURES)
    run_one(PLAIN, cases[0], 2, Path(tempfile.gettempdir()), args.seed)  # warm torch while the server starts

    server.wait_healthy()
    print(f"Prefect API {server.api_url} "
          + (f"(local server, healthy after {server.start_seconds:.1f} s)" if server.own else "(given)")
          + f"; heartbeats off; run logs to the API {'on' if args.api_logs else 'off'}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(temporary_settings(updates={
            PREFECT_API_URL: server.api_url,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_TO_API_ENABLED: args.api_logs,
        }))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="overhead-", dir=args.dir)))

        warm_up(cases, workdir, args.seed)
        series: dict[tuple[str, str, int], Series] = {}
        last: dict[tuple[str, str], list[torch.Tensor]] = {}
        for round_ in range(repeat):
            for case, contender, epochs in schedule(cases, round_):
                run = run_one(contender, case, epochs, workdir, args.seed, server)
                if run.epochs != epochs:
                    raise RuntimeError(f"{case.name} {contender}: trained {run.epochs} epochs, not {epochs}")
                s = series.setdefault((case.name, contender, epochs), Series(contender, epochs))
                s.fit.seconds.append(run.fit)
                s.wall.seconds.append(run.wall)
                s.tasks.append(run.tasks)
                s.in_tasks.append(run.in_tasks)
                s.close.append(run.close)
                s.cpu_threads.append(run.cpu_threads)
                s.cpu_server.append(run.cpu_server)
                if epochs:
                    last[(case.name, contender)] = run.params
    server.stop()  # its log's counts are reported below
    print(f"measured in {time.perf_counter() - began:.0f} s (server start included); "
          f"load average {os.getloadavg()[0]:.1f} (1 min) at the end")

    print_rule(f"seconds inside the fit (net.fit / fit_in_flow), best and median of {repeat}")
    print(f"{'case':<8}{'contender':<14}{'epochs':>7}{'tasks':>7}{'best s':>9}{'median s':>10}")
    for (case_name, contender, epochs), s in series.items():
        tasks = "-" if s.tasks[-1] is None else str(s.tasks[-1])
        print(f"{case_name:<8}{contender:<14}{epochs:>7}{tasks:>7}{s.fit.best:>9.3f}{s.fit.median:>10.3f}")
    noisy = [f"{c} {n} x{e} ({s.fit.worst / s.fit.best:.1f}x)" for (c, n, e), s in series.items()
             if e and s.fit.worst > NOISY_SPREAD * s.fit.best]
    if noisy:
        print(f"note: noisy rounds, slowest > {NOISY_SPREAD}x best: {', '.join(noisy)}")

    print_rule("fixed costs per flow, apart from the epochs: median s")
    print(f"{'case':<8}{'Prefect flow start/stop':>25}{'fit_in_flow setup':>19}{'artifact flush at close':>25}")
    fixed: dict[str, dict[str, float]] = {}
    for case in cases:
        flows = [s for (c, n, _), s in series.items() if c == case.name and n != PLAIN]
        zero_plain, zero_flow = series[(case.name, PLAIN, 0)], series[(case.name, ZERO_FLOW, 0)]
        fixed[case.name] = {
            "flow_start_stop": statistics.median(w - f for s in flows for w, f in zip(s.wall.seconds, s.fit.seconds)),
            # a 0-epoch fit_in_flow less a 0-epoch net.fit, less its own close
            "fit_in_flow_setup": statistics.median(f - c for f, c in zip(zero_flow.fit.seconds, zero_flow.close))
            - zero_plain.fit.median,
            "plain_setup": zero_plain.fit.median,
            "artifact_close": statistics.median(c for s in flows if s.epochs for c in s.close),
        }
        f = fixed[case.name]
        print(f"{case.name:<8}{f['flow_start_stop']:>25.3f}{f['fit_in_flow_setup']:>19.3f}{f['artifact_close']:>25.3f}")
    print("start/stop: wall time of the flow call less the time inside fit_in_flow (all flow runs)\n"
          "setup: a 0-epoch fit_in_flow less a 0-epoch net.fit (claim, create the 3 artifacts, release)\n"
          "flush: the record's timings['close_seconds'] in the runs with epochs (the artifacts' final update)")

    print_rule("per epoch, the fixed costs above excluded: best (median) ms")
    print(f"{'case':<8}{'contender':<16}{'per epoch':>16}{'overhead':>16}{'flow / plain':>16}"
          f"{'slower epochs':>16}{'between tasks':>16}")
    ratios: dict[str, dict[str, Any]] = {}
    for case in cases:
        plain = series[(case.name, PLAIN, case.epochs)]
        p = plain.per_epoch(fixed[case.name]["plain_setup"])
        p_best, p_med = min(p), statistics.median(p)
        print(f"{case.name:<8}{PLAIN:<16}{ms(p):>16}")
        for variant in case.flow_variants:
            name = flow_name(variant)
            s = series[(case.name, name, case.epochs)]
            f = s.per_epoch(fixed[case.name]["plain_setup"] + fixed[case.name]["fit_in_flow_setup"])
            inside = [t / s.epochs for t in s.in_tasks]
            r = {"plain_ms": p_best * 1e3, "plain_ms_median": p_med * 1e3,
                 "flow_ms": min(f) * 1e3, "flow_ms_median": statistics.median(f) * 1e3,
                 "ratio": min(f) / p_best, "ratio_median": statistics.median(f) / p_med,
                 "tasks": s.tasks[-1]}
            r["overhead_ms"], r["overhead_ms_median"] = r["flow_ms"] - r["plain_ms"], r["flow_ms_median"] - r["plain_ms_median"]
            # where the overhead goes (medians): the epochs themselves run slower inside the tasks
            # (the commit's fsync and the CPU shared with Prefect's threads and server), and the time
            # between the task bodies (Prefect's task engine, the driver's bookkeeping)
            r["slower_epochs_ms"] = (statistics.median(inside) - p_med) * 1e3
            r["between_tasks_ms"] = statistics.median(fi - i for fi, i in zip(f, inside)) * 1e3
            ratios.setdefault(case.name, {})[name] = r
            overhead = f"{r['overhead_ms']:.1f} ({r['overhead_ms_median']:.1f})"
            ratio = f"{r['ratio']:.2f}x ({r['ratio_median']:.2f}x)"
            slower = f"({r['slower_epochs_ms']:.1f})" if "slower_epochs_ms" in r else "n/a"
            between = f"({r['between_tasks_ms']:.1f})" if "between_tasks_ms" in r else "n/a"
            print(f"{case.name:<8}{name:<16}{ms(f):>16}{overhead:>16}{ratio:>16}{slower:>16}{between:>16}")
    print("slower epochs: time in the task bodies per epoch less the plain epoch (median)\n"
          "between tasks: the rest (Prefect's task engine, the driver's manifest reads; median)")

    print_rule("CPU besides the training thread, per epoch (0-epoch runs subtracted): median ms")
    print(f"{'case':<8}{'contender':<16}{'our other threads':>19}{'Prefect server':>16}")
    cpu: dict[str, dict[str, Any]] = {}
    for case in cases:
        for name in contenders_of(case):
            s = series[(case.name, name, case.epochs)]
            zero = series[(case.name, PLAIN if name == PLAIN else ZERO_FLOW, 0)]
            threads = (statistics.median(s.cpu_threads) - statistics.median(zero.cpu_threads)) / s.epochs
            known = [c for c in s.cpu_server if c is not None]
            zero_known = [c for c in zero.cpu_server if c is not None]
            on_server = ((statistics.median(known) - statistics.median(zero_known)) / s.epochs
                         if known and zero_known else None)
            cpu.setdefault(case.name, {})[name] = {"threads_ms": threads * 1e3,
                                                  "server_ms": None if on_server is None else on_server * 1e3}
            shown = "n/a" if on_server is None else f"{on_server * 1e3:.1f}"
            print(f"{case.name:<8}{name:<16}{threads * 1e3:>19.1f}{shown:>16}")
    print("our other threads: this process's CPU time less the main thread's (Prefect's event and log "
          "workers,\nthe artifact helper); Prefect server: its process's CPU time (own server only; "
          "plain rows: idle services)")

    print_rule("targets (from the issue)")
    targets: list[dict[str, Any]] = []
    for case, variant, limit in ((LONG, 1, LONG_RATIO_TARGET), (SHORT, "auto", AUTO_RATIO_TARGET)):
        name = flow_name(variant)
        r = ratios.get(case.name, {}).get(name)
        value = None if r is None else r["ratio"]
        targets.append({"target": f"{case.name} epochs, {name}: flow / plain <= {limit:.2f}x", "value": value,
                        "pass": None if value is None else value <= limit})
    for t in targets:
        verdict = "SKIP" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        shown = "n/a" if t["value"] is None else f"{t['value']:.2f}x"
        print(f"{t['target']:<50}{shown:>8}  {verdict}")
    if args.quick:
        print("(--quick: short epochs only, 1 round, fewer epochs than the full run)")

    print_rule("sanity")
    same: dict[str, bool] = {}
    for case in cases:
        reference = last[(case.name, PLAIN)]
        for variant in case.flow_variants:
            name = flow_name(variant)
            other = last[(case.name, name)]
            ok = len(other) == len(reference) and all(torch.equal(a, b) for a, b in zip(reference, other))
            same[f"{case.name} {name}"] = ok
            print(f"{case.name} epochs: identical weights plain vs {name}: {'yes' if ok else 'no'}")
    counts = server.counts
    if counts is not None:
        print(f"local server log: {counts['database is locked']} 'database is locked', "
              f"{counts['503']} '503' lines")

    if args.json:
        payload = {
            "meta": {"python": platform.python_version(), "torch": torch.__version__,
                     "prefect": prefect.__version__, "prefect_torch": prefect_torch.__version__,
                     "source": source_version(),
                     "threads": torch.get_num_threads(), "seed": args.seed, "repeat": repeat,
                     "api_url": server.api_url, "own_server": server.own, "api_logs": args.api_logs,
                     "cases": [vars(c) for c in cases], "argv": sys.argv[1:]},
            "fit_seconds": [{"case": c, "contender": n, "epochs": e, "seconds": s.fit.seconds,
                             "wall_seconds": s.wall.seconds, "tasks": s.tasks, "in_tasks_seconds": s.in_tasks,
                             "close_seconds": s.close, "cpu_threads_seconds": s.cpu_threads,
                             "cpu_server_seconds": s.cpu_server}
                            for (c, n, e), s in series.items()],
            "fixed": fixed, "per_epoch": ratios, "cpu_per_epoch": cpu, "targets": targets, "identical_weights": same,
            "server_log": counts,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, default=str)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
