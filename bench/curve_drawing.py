"""Curve drawing: what one update of the curves in the Prefect UI costs (``prefect_torch.curves``).

Run from the repository root, in the project's virtualenv (with the ``plot`` extra)::

    python bench/curve_drawing.py --threads 1                # best and median of 5 rounds
    python bench/curve_drawing.py --quick                    # smoke test: 1 round, fewer cases
    python bench/curve_drawing.py --repeat 9 --json curves.json

What is measured
----------------
* ``training_curves`` of a history of 10, 100 and 1,000 epochs (noisy losses and an accuracy, as a
  net's history holds them), with the current and best epochs marked and one resume: one call
  draws both images (losses, score) and encodes them as 64-colour PNGs. What an experiment's
  summary artifact pays per update.
* ``sweep_curves`` of 8 trials x 50 epochs (and 24 x 50): the sweep's ``<sweep>-curves`` image.
* The baseline, timed in the same command: one epoch of the demo's classifier
  (``prefect_torch.examples.make_net`` on 1,000 samples, the README's example), so the table says
  how many epochs of that tiny training one draw is worth. The drawing happens on a helper thread,
  not the training thread; on a machine with a spare core it costs the training nothing.

Each round runs every case once, in the same order; the table shows the median and best of
``--repeat`` rounds (milliseconds per call, wall clock and the thread's CPU time: the latter is
steadier on a busy machine) and the PNG sizes. The first call of the process
(matplotlib's imports and font cache) is timed apart.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timing, print_rule, versions_line  # noqa: E402

from prefect_torch.curves import curves_available, sweep_curves, training_curves  # noqa: E402
from prefect_torch.examples import make_data, make_net  # noqa: E402

EPOCHS = (10, 100, 1000)
QUICK_EPOCHS = (10, 100)
SWEEPS = ((8, 50), (24, 50))


def noisy_history(epochs: int, seed: int = 0) -> list[dict[str, Any]]:
    """A net's history of ``epochs`` rows: falling losses with noise, a rising accuracy."""
    rng = np.random.default_rng(seed)
    rows = []
    for epoch in range(1, epochs + 1):
        level = 0.3 + 0.7 * np.exp(-5 * epoch / epochs)
        rows.append({"epoch": epoch, "train_loss": float(level + rng.normal(0, 0.02)),
                     "valid_loss": float(level + 0.05 + rng.normal(0, 0.02)),
                     "valid_acc": float(1 - level / 2 + rng.normal(0, 0.01)), "dur": 0.01,
                     "valid_loss_best": False, "event_cp": True, "batches": []})
    return rows


def cases(epochs: tuple[int, ...], sweeps: tuple[tuple[int, int], ...]) -> dict[str, Callable[[], Any]]:
    """The calls to time, by name; each returns what it drew (a dict of PNGs or one PNG)."""
    found: dict[str, Callable[[], Any]] = {}
    for n in epochs:
        rows = noisy_history(n)
        found[f"training_curves, {n:,} epochs"] = (
            lambda rows=rows, n=n: training_curves(rows, current=n, best=max(1, n * 3 // 4),
                                                   resumes=[(n // 2, "run crimson-fox, attempt 2")]))
    for trials, n in sweeps:
        histories = {f"lr={0.1 / (i + 1):.4g},num_units={10 * (i % 3 + 1)}": noisy_history(n, seed=i)
                     for i in range(trials)}
        best = next(iter(histories))
        found[f"sweep_curves, {trials} trials x {n} epochs"] = (
            lambda histories=histories, best=best: sweep_curves(histories, best=best))
    return found


def png_bytes(drawn: Any) -> list[int]:
    return [len(png) for png in drawn.values()] if isinstance(drawn, dict) else [len(drawn)]


def time_epoch(repeat: int) -> Timing:
    """One epoch of the demo's classifier (1,000 samples), ``repeat`` times (a warm-up first)."""
    X, y = make_data(1000)
    torch.manual_seed(0)
    net = make_net(max_epochs=1, verbose=0).fit(X, y)
    timing = Timing()
    for _ in range(repeat):
        began = time.perf_counter()
        net.partial_fit(X, y)
        timing.seconds.append(time.perf_counter() - began)
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 and 100 epochs, 8 trials, 1 round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5); the median and best are shown")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) (default: torch's)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not curves_available():
        print("error: matplotlib is not installed: pip install 'prefect-torch[plot]'", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    todo = cases(QUICK_EPOCHS if args.quick else EPOCHS, SWEEPS[:1] if args.quick else SWEEPS)

    print("curve drawing: one update of the curves artifacts (matplotlib Agg, 64-colour PNG)")
    print(versions_line())
    print(f"torch threads {torch.get_num_threads()}; {repeat} round(s)")
    began = time.perf_counter()
    training_curves(noisy_history(3))
    first = time.perf_counter() - began
    timings = {name: Timing() for name in todo}
    cpu = {name: Timing() for name in todo}  # this thread's CPU time: what a helper thread would use
    sizes: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name, call in todo.items():
            began, began_cpu = time.perf_counter(), time.thread_time()
            drawn = call()
            timings[name].seconds.append(time.perf_counter() - began)
            cpu[name].seconds.append(time.thread_time() - began_cpu)
            sizes[name] = png_bytes(drawn)
    epoch = time_epoch(repeat)

    print_rule(f"ms per call (median of {repeat}; best in brackets), PNG sizes")
    print("| case | ms per call | CPU ms per call | PNG kB | call / demo epoch |")
    print("|---|---:|---:|---:|---:|")
    for name, timing in timings.items():
        print(f"| {name} | {timing.median * 1e3:.0f} ({timing.best * 1e3:.0f}) "
              f"| {cpu[name].median * 1e3:.0f} ({cpu[name].best * 1e3:.0f}) "
              f"| {' + '.join(f'{b / 1e3:.1f}' for b in sizes[name])} | {timing.median / epoch.median:.1f}x |")
    print(f"| baseline: one epoch of the demo's classifier (1,000 samples) | {epoch.median * 1e3:.0f} "
          f"({epoch.best * 1e3:.0f}) | | | 1.0x |")
    print(f"\nfirst call of the process (imports, font cache): {first * 1e3:.0f} ms")
    if args.json:
        payload = {"repeat": repeat, "threads": torch.get_num_threads(), "first_call_s": first,
                   "epoch_s": epoch.seconds,
                   "cases": [{"case": name, "seconds": t.seconds, "cpu_seconds": cpu[name].seconds,
                              "png_bytes": sizes[name]}
                             for name, t in timings.items()]}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
