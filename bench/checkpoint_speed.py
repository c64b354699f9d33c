"""Checkpoint speed: a crash-safe store commit against a bare ``torch.save``, and background commits.

Run from the repository root, in the project's virtualenv::

    python bench/checkpoint_speed.py                       # 1, 100 and 400 MB models, best of 3
    python bench/checkpoint_speed.py --quick               # smoke test: 1 and 20 MB, 1 repeat
    python bench/checkpoint_speed.py --sizes 400 --repeat 5 --json cp.json --dir /mnt/fast

What is measured
----------------
Each model is an ``nn.Sequential`` of square ``nn.Linear`` layers sized to hold about the given
number of megabytes (10^6 bytes) of float32 parameters, inside an initialized
``prefect_torch.NeuralNet`` (MSE loss) whose history has one row per epoch. Two optimizers:

* ``sgd``          -- plain SGD: ``optimizer.pt`` is tiny (no state);
* ``sgd+momentum`` -- SGD with momentum after a step, so ``optimizer.pt`` is as big as the params.

(a) Synchronous commit. Three contenders write the same state to the same disk:

* ``torch.save``        -- bare ``torch.save`` of the module, optimizer and criterion state dicts
  and of the train state (RNGs), plus the history JSON, each to a path in a fresh folder; no
  fsync (what skorch's ``Checkpoint`` does). The data may still sit in the page cache afterwards.
* ``torch.save+fsync``  -- the same, then each file fsynced (the cost of durability alone).
* ``commit``            -- ``Checkpoint(monitor=None, dirname=..., background=False).on_epoch_end``
  on the real net: the store's versioned commit (files written through the sha256 hashing writer,
  fsynced, ``version.json``, folder fsync, manifest replaced atomically, root files published,
  old versions pruned with ``keep_last=3``).

Each round runs every contender once, in a rotated order; ``os.sync()`` runs (untimed) before
every timed call, so no contender pays for the writeback of another's dirty pages. The table shows
the best and median of ``--repeat`` rounds; ratios use the best.

(b) Background commit. ``Checkpoint(monitor=None, background=True)`` on the same net: the training
thread snapshots the state dicts into reused staging buffers and hands the commit to a writer
thread. The loop calls the real ``on_epoch_end`` after simulated training work (``--work sleep``:
``time.sleep``; ``--work matmul``: float32 matmuls on the training thread for the same wall time)
and times only the ``on_epoch_end`` call, i.e. how long training is blocked per checkpoint:

* ``long epochs``  -- work = 1.5x the synchronous commit, so the previous commit has finished
  (real training, where an epoch outlasts a commit). Target: blocked <= 10% of the synchronous
  commit for the largest (400 MB) model.
* ``short epochs`` -- work = 0.25x the commit: the next checkpoint must wait for the one in
  flight (its buffers are reused), so blocking is about ``commit - work``. Expected; shown apart.

Each background run makes ``--checkpoints`` checkpoints; the first allocates the staging buffers
and is shown apart (``first``); the others are the steady-state samples (best and median of all
runs). The runs of the two epoch lengths are interleaved.

Targets (from the issue): commit / bare torch.save <= 1.2x; background blocking <= 10% of the
synchronous commit (400 MB model).

Noise: the timings depend on the disk under ``--dir`` (a virtual disk on a shared host varies from
minute to minute), on the page cache, and on the kernel's writeback of earlier runs' files.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import common as timing
import torch
from torch import nn

import prefect_torch
from prefect_torch import NeuralNet, train_state
from prefect_torch.callbacks import Checkpoint
from prefect_torch.persistence import history_json

REPO = Path(__file__).resolve().parents[1]
MB = 10**6
SIZES = (1, 100, 400)
QUICK_SIZES = (1, 20)
OPTIMIZERS = ("sgd", "sgd+momentum")
COMMIT_OVER_SAVE_TARGET = 1.2
BLOCKED_OVER_COMMIT_TARGET = 0.10
LONG_EPOCH, SHORT_EPOCH = 1.5, 0.25  # simulated work, in units of the synchronous commit
NOISY_SPREAD = 1.5

BARE, FSYNC, COMMIT = "torch.save", "torch.save+fsync", "commit"


# -- the model and net ---------------------------------------------------------------------------
def layer_plan(megabytes: float) -> tuple[int, int]:
    """``(width, layers)`` of square Linear layers holding about ``megabytes`` MB of float32."""
    target = megabytes * MB
    width = 2 ** round(math.log2(math.sqrt(target / 4 / 6)))  # about 6 layers
    width = min(8192, max(64, width))
    per_layer = (width * width + width) * 4
    return width, max(1, round(target / per_layer))


def make_net(megabytes: float, optimizer: str) -> NeuralNet:
    width, layers = layer_plan(megabytes)
    torch.manual_seed(0)
    module = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    kwargs: dict[str, Any] = {"optimizer__momentum": 0.9} if optimizer == "sgd+momentum" else {}
    net = NeuralNet(module, nn.MSELoss, lr=0.01, verbose=0, train_split=None, **kwargs).initialize()
    if optimizer == "sgd+momentum":  # one step creates the momentum buffers; fill them like a real run
        for p in net.module_.parameters():
            p.grad = torch.zeros_like(p)
        net.optimizer_.step()
        for p in net.module_.parameters():
            net.optimizer_.state[p]["momentum_buffer"].copy_(p.detach())
            p.grad = None
    return net


def new_epoch(net: NeuralNet) -> None:
    epoch = len(net.history) + 1
    net.history.new_epoch()
    net.history.record("epoch", epoch)
    net.history.record("train_loss", 1.0 / epoch)
    net.history.record("dur", 1.0)


def param_bytes(net: NeuralNet) -> int:
    return sum(p.numel() * p.element_size() for p in net.module_.parameters())


# -- the contenders of (a) ---------------------------------------------------------------------------
def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bare_save(net: NeuralNet, folder: str, fsync: bool) -> list[str]:
    """skorch's way: torch.save of each state dict to a path (and the history as JSON)."""
    os.makedirs(folder)
    paths = []
    for name, obj in (("params.pt", net.module_.state_dict()), ("optimizer.pt", net.optimizer_.state_dict()),
                      ("criterion.pt", net.criterion_.state_dict())):
        path = os.path.join(folder, name)
        torch.save(obj, path)
        paths.append(path)
    path = os.path.join(folder, "history.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(history_json(net.history))
    paths.append(path)
    path = os.path.join(folder, "train_state.pt")
    torch.save(train_state.capture(net), path)
    paths.append(path)
    if fsync:
        for path in paths:
            _fsync_path(path)
    return paths


class Timing(timing.Timing):
    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "best": self.best, "median": self.median, "worst": self.worst}


def _settle() -> None:
    """Start from a quiet disk: earlier dirty pages written back, garbage collected (untimed)."""
    gc.collect()
    os.sync()


def measure_sync(net: NeuralNet, workdir: str, repeat: int) -> tuple[dict[str, Timing], int]:
    """(a): ``repeat`` rounds of the three contenders, rotated; returns timings and bytes written."""
    cp_dir = os.path.join(workdir, "store")
    cp = Checkpoint(monitor=None, dirname=cp_dir, background=False)
    net.set_params(callbacks=[cp])
    net.initialize_callbacks()
    cp = dict(net.callbacks_)["Checkpoint"]
    cp.on_train_begin(net)

    counter = [0]

    def run_bare(fsync: bool) -> Callable[[], None]:
        def run() -> None:
            counter[0] += 1
            folder = os.path.join(workdir, f"bare-{counter[0]}")
            bare_save(net, folder, fsync)
        return run

    def run_commit() -> None:
        new_epoch(net)
        cp.on_epoch_end(net)

    contenders = {BARE: run_bare(False), FSYNC: run_bare(True), COMMIT: run_commit}
    # an untimed warm-up of each (first-call costs: imports, allocator)
    for run in contenders.values():
        _settle()
        run()
    timings = {name: Timing() for name in contenders}
    names = list(contenders)
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            _settle()
            start = time.perf_counter()
            contenders[name]()
            timings[name].seconds.append(time.perf_counter() - start)
            _cleanup_bare(workdir)
    cp.on_train_end(net)  # as fit() does: lets the checkpoint finish any work in flight
    errors = getattr(cp, "errors_", 0)
    if errors:
        raise RuntimeError(f"{errors} synchronous commit(s) failed; see the warnings above")
    version = cp.store().latest_verified()
    written = sum(entry.size for entry in version.files.values())
    return timings, written


def _cleanup_bare(workdir: str) -> None:
    for name in os.listdir(workdir):
        if name.startswith("bare-"):
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


# -- (b) background commits ------------------------------------------------------------------------
def simulate_work(seconds: float, kind: str, committer: Any = None, until_idle: bool = False
                  ) -> tuple[float | None, float]:
    """Stand in for an epoch of training: ``seconds`` of sleep or matmuls, in small steps.

    Returns when the background commit in flight was seen finished (seconds after the start,
    within a few ms; ``None`` if it was still running) and how long the work lasted. With
    ``until_idle`` the work goes on past ``seconds`` until that commit is done: an epoch
    longer than the commit.
    """
    a = torch.randn(256, 256) if kind == "matmul" else None
    start = time.perf_counter()
    done_at: float | None = None
    while True:
        elapsed = time.perf_counter() - start
        busy = committer is not None and committer.busy()
        if not busy and done_at is None:
            done_at = elapsed
        if elapsed >= seconds and not (until_idle and busy):
            return done_at, elapsed
        if a is None:
            time.sleep(min(0.005, max(seconds - elapsed, 0.0005)))
        else:
            a = torch.tanh(a @ a)


@dataclass
class BackgroundRun:
    first: list[float] = field(default_factory=list)   # the first checkpoint of each run (allocates staging)
    steady: Timing = field(default_factory=Timing)     # the others
    commit: list[float] = field(default_factory=list)  # background commit durations seen from outside
    extended: int = 0                                  # long epochs stretched because a commit outlasted them
    epochs: int = 0


def measure_background(net: NeuralNet, workdir: str, commit_s: float, repeat: int, checkpoints: int,
                       work: str) -> dict[str, BackgroundRun]:
    """(b): the training thread's time in ``on_epoch_end`` with ``background=True``."""
    cases = {"long epochs": LONG_EPOCH, "short epochs": SHORT_EPOCH}
    results = {name: BackgroundRun() for name in cases}
    names = list(cases)
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            long_epochs = name == "long epochs"
            result = results[name]
            cp_dir = os.path.join(workdir, f"background-{round_}-{name.split()[0]}")
            cp = Checkpoint(monitor=None, dirname=cp_dir, background=True)
            net.set_params(callbacks=[cp])
            net.initialize_callbacks()
            cp = dict(net.callbacks_)["Checkpoint"]
            cp.on_train_begin(net)
            _settle()
            for i in range(checkpoints):
                target = cases[name] * commit_s
                done_at, lasted = simulate_work(target, work, cp.committer_, until_idle=long_epochs)
                if i > 0 and long_epochs:
                    result.epochs += 1
                    result.extended += lasted > target + 0.01
                    if done_at is not None:
                        result.commit.append(done_at)
                new_epoch(net)
                start = time.perf_counter()
                cp.on_epoch_end(net)
                blocked = time.perf_counter() - start
                (result.first if i == 0 else result.steady.seconds).append(blocked)
            cp.on_train_end(net)  # waits for the last commit
            if cp.errors_:
                raise RuntimeError(f"{cp.errors_} background commit(s) failed; see the warnings above")
            del cp
            net.set_params(callbacks=None)
            net.initialize_callbacks()  # drop the staging buffers
            shutil.rmtree(cp_dir, ignore_errors=True)
    return results


# -- reporting ---------------------------------------------------------------------------------------
def same_filesystem(a: str, b: str | os.PathLike) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def default_dir() -> str:
    """A temp folder on the repository's file system (the system temp dir if it is the same one)."""
    base = tempfile.gettempdir()
    if not same_filesystem(base, REPO):
        base = str(REPO / "bench")
    return tempfile.mkdtemp(prefix="checkpoint_speed-", dir=base)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _load() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return (float("nan"),) * 3


def _bg_commit(values: list[float]) -> str:
    return f"{_ms(min(values))} ({_ms(statistics.median(values))})" if values else "n/a"


def _s(seconds: float) -> str:
    return f"{seconds:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: only {' and '.join(map(str, QUICK_SIZES))} MB models, 1 repeat")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated model sizes in MB of float32 parameters "
                             f"(default {','.join(map(str, SIZES))})")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help=f"comma-separated, of {', '.join(OPTIMIZERS)} (default both)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds (default 3); the best and median are shown")
    parser.add_argument("--checkpoints", type=int, default=4,
                        help="checkpoints per background run (default 4; the first allocates the buffers)")
    parser.add_argument("--work", choices=("sleep", "matmul"), default="sleep",
                        help="simulated training between background checkpoints (default sleep)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads(N) (default: torch's default)")
    parser.add_argument("--no-background", action="store_true", help="skip (b), the background commits")
    parser.add_argument("--dir", default=None,
                        help="where to write (default: a temp folder on the repository's file system); "
                             "what the bench writes is removed after")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.checkpoints < 2:
        parser.error("--checkpoints must be at least 2 (the first one is a warm-up)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    if args.sizes:
        try:
            sizes = tuple(float(s) for s in args.sizes.split(",") if s.strip())
        except ValueError:
            parser.error(f"--sizes {args.sizes!r}: give numbers of MB, e.g. 1,100,400")
    else:
        sizes = QUICK_SIZES if args.quick else SIZES
    optimizers = tuple(o.strip() for o in args.optimizers.split(",") if o.strip())
    for o in optimizers:
        if o not in OPTIMIZERS:
            parser.error(f"--optimizers: unknown {o!r} (choose among {', '.join(OPTIMIZERS)})")

    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        root = tempfile.mkdtemp(prefix="checkpoint_speed-", dir=args.dir)
    else:
        root = default_dir()
    usage = shutil.disk_usage(root)
    load_before = _load()

    print("checkpoint speed: store commit vs bare torch.save; background commit blocking")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"prefect_torch {prefect_torch.__version__}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"writing under {root} ({usage.free / 1e9:.0f} GB free; same file system as the repo: "
          f"{'yes' if same_filesystem(root, REPO) else 'no'}); {repeat} interleaved round(s); "
          f"background: {args.checkpoints} checkpoints per run, work = {args.work}")
    print(f"load average before: {load_before}")

    sync_rows: list[dict[str, Any]] = []
    bg_rows: list[dict[str, Any]] = []
    try:
        for megabytes in sizes:
            for optimizer in optimizers:
                net = make_net(megabytes, optimizer)
                width, layers = layer_plan(megabytes)
                pbytes = param_bytes(net)
                label = f"{megabytes:g} MB"
                workdir = tempfile.mkdtemp(prefix=f"{megabytes:g}MB-{optimizer}-", dir=root)
                timings, written = measure_sync(net, workdir, repeat)
                row = {"size": label, "optimizer": optimizer, "width": width, "layers": layers,
                       "param_bytes": pbytes, "written_bytes": written,
                       "timings": {name: t.as_dict() for name, t in timings.items()},
                       "commit_over_save": timings[COMMIT].best / timings[BARE].best,
                       "commit_over_save_median": timings[COMMIT].median / timings[BARE].median,
                       "commit_over_save_fsync": timings[COMMIT].best / timings[FSYNC].best,
                       "commit_over_save_fsync_median": timings[COMMIT].median / timings[FSYNC].median}
                sync_rows.append(row)
                print(f"  {label} {optimizer}: {written / MB:.0f} MB; torch.save {_s(timings[BARE].best)} s, "
                      f"+fsync {_s(timings[FSYNC].best)} s, commit {_s(timings[COMMIT].best)} s", flush=True)
                shutil.rmtree(workdir, ignore_errors=True)
                if not args.no_background:
                    commit_s = timings[COMMIT].best
                    workdir = tempfile.mkdtemp(prefix=f"{megabytes:g}MB-{optimizer}-bg-", dir=root)
                    runs = measure_background(net, workdir, commit_s, repeat, args.checkpoints, args.work)
                    shutil.rmtree(workdir, ignore_errors=True)
                    long_, short = runs["long epochs"], runs["short epochs"]
                    bg_rows.append({
                        "size": label, "optimizer": optimizer, "megabytes": megabytes, "commit_s": commit_s,
                        "long_epochs": {"work_s": LONG_EPOCH * commit_s, "first": long_.first,
                                        **long_.steady.as_dict(), "background_commit_s": long_.commit,
                                        "extended_epochs": long_.extended, "epochs": long_.epochs},
                        "short_epochs": {"work_s": SHORT_EPOCH * commit_s, "first": short.first,
                                         **short.steady.as_dict()},
                        "blocked_over_commit": long_.steady.best / commit_s,
                        "blocked_over_commit_median": long_.steady.median / commit_s,
                    })
                    print(f"  {label} {optimizer}: background blocked {_ms(long_.steady.best)} "
                          f"(long epochs), {_ms(short.steady.best)} (short epochs)", flush=True)
                del net
                gc.collect()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # -- tables -------------------------------------------------------------------------------------
    print(f"\n### (a) synchronous commit vs bare torch.save "
          f"(seconds, best of {repeat}; median in brackets)\n")
    print("| model | optimizer | files MB | torch.save | torch.save+fsync | commit "
          "| commit / torch.save | commit / (torch.save+fsync) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in sync_rows:
        t = r["timings"]
        print(f"| {r['size']} ({r['layers']}x{r['width']}) | {r['optimizer']} "
              f"| {r['written_bytes'] / MB:.0f} "
              f"| {_s(t[BARE]['best'])} ({_s(t[BARE]['median'])}) "
              f"| {_s(t[FSYNC]['best'])} ({_s(t[FSYNC]['median'])}) "
              f"| {_s(t[COMMIT]['best'])} ({_s(t[COMMIT]['median'])}) "
              f"| {r['commit_over_save']:.2f}x ({r['commit_over_save_median']:.2f}x) "
              f"| {r['commit_over_save_fsync']:.2f}x ({r['commit_over_save_fsync_median']:.2f}x) |")

    if bg_rows:
        print(f"\n### (b) background commit: training thread blocked per checkpoint "
              f"(best of {repeat * (args.checkpoints - 1)} steady checkpoints; median in brackets)\n")
        print("| model | optimizer | sync commit | long epochs: blocked | blocked / commit "
              "| commit on the writer thread | epochs stretched | short epochs: blocked "
              "| first checkpoint (allocates buffers) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in bg_rows:
            lo, sh = r["long_epochs"], r["short_epochs"]
            print(f"| {r['size']} | {r['optimizer']} | {_ms(r['commit_s'])} "
                  f"| {_ms(lo['best'])} ({_ms(lo['median'])}) "
                  f"| {r['blocked_over_commit'] * 100:.1f}% ({r['blocked_over_commit_median'] * 100:.1f}%) "
                  f"| {_bg_commit(lo['background_commit_s'])} | {lo['extended_epochs']}/{lo['epochs']} "
                  f"| {_ms(sh['best'])} ({_ms(sh['median'])}; work {_ms(sh['work_s'])}) "
                  f"| {_ms(min(lo['first'] + sh['first']))} |")
        print(f"\nlong epochs: work = {LONG_EPOCH}x the best sync commit, stretched until the commit in "
              "flight is done (the count of stretched epochs is shown; the commit on the writer thread is "
              "timed from the outside, best (median), 5 ms resolution); "
              f"short epochs: work = {SHORT_EPOCH}x, so blocking includes "
              "waiting for the commit in flight, about commit - work (expected, shown apart)")

    print("\n### targets (from the issue)\n")
    targets: list[dict[str, Any]] = []
    for r in sync_rows:
        value = r["commit_over_save"]
        name = f"{r['size']} {r['optimizer']}: commit / torch.save <= {COMMIT_OVER_SAVE_TARGET}x"
        targets.append({"target": name,
                        "value": value, "pass": value <= COMMIT_OVER_SAVE_TARGET})
    if bg_rows:
        biggest = max(r["megabytes"] for r in bg_rows)
        for r in bg_rows:
            if r["megabytes"] != biggest:
                continue
            value = r["blocked_over_commit"]
            targets.append({"target": f"{r['size']} {r['optimizer']}: background blocked / sync commit "
                                      f"<= {BLOCKED_OVER_COMMIT_TARGET:.0%}",
                            "value": value, "pass": value <= BLOCKED_OVER_COMMIT_TARGET})
    for t in targets:
        shown = f"{t['value'] * 100:.1f}%" if "blocked" in t["target"] else f"{t['value']:.2f}x"
        print(f"- {t['target']}: {shown} {'PASS' if t['pass'] else 'MISS'}")

    load_after = _load()
    noisy = [f"{r['size']} {r['optimizer']} {name} ({t['worst'] / t['best']:.1f}x)"
             for r in sync_rows for name, t in r["timings"].items() if t["worst"] > NOISY_SPREAD * t["best"]]
    print("\nnote: disk timings are noisy (virtual disks on shared hosts, page cache, writeback); "
          "the best of the interleaved rounds is the steadier figure. The bare torch.save may return "
          "with the data only in the page cache: it is not durable, while commit and torch.save+fsync are.")
    busy = max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
    print(f"note: load average (1, 5, 15 min) before {load_before}, after {load_after} "
          f"on {os.cpu_count()} CPUs"
          + ("; other processes were busy: expect noisier figures (staging copies and the hashing "
             "thread compete for the CPUs)" if busy else ""))
    if noisy:
        print(f"note: noisy rounds, slowest > {NOISY_SPREAD}x best: {', '.join(noisy)}")

    if args.json:
        payload = {
            "meta": {"python": platform.python_version(), "torch": torch.__version__,
                     "prefect_torch": prefect_torch.__version__, "cpus": os.cpu_count(),
                     "threads": torch.get_num_threads(), "repeat": repeat, "checkpoints": args.checkpoints,
                     "work": args.work, "load_before": load_before, "load_after": load_after,
                     "argv": sys.argv[1:] if argv is None else argv},
            "sync": sync_rows, "background": bg_rows, "targets": targets,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
