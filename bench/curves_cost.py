"""What the experiment's curves and history table cost, and whether drawing them slows training.

Run from the repository root, in the project's virtualenv (matplotlib installed: the ``plot`` extra)::

    python bench/curves_cost.py                 # 10 / 100 / 1000 epochs, 3 interleaved rounds
    python bench/curves_cost.py --quick         # smoke test

What is measured
----------------
1. Per update of the artifacts, for histories of 10, 100 and 1000 epochs: on the *training*
   thread, the snapshot the driver hands over after each task
   (:class:`~prefect_torch.orchestration.experiment_history.HistorySnapshots`, one new epoch); on the *publisher's* thread, the history table's rows
   (:func:`~prefect_torch.orchestration.experiment_history.experiment_rows`) and the curves
   (:func:`~prefect_torch.orchestration.artifacts.curve_images`: matplotlib, Agg, PNG, base64),
   with the size of the images in the summary. Best and median of ``--repeat`` calls.
2. Training with the curves drawn beside it: the same classifier (``MyModule`` on ``make_data``,
   one torch thread, epochs of about 0.05 s, a ``Checkpoint`` commit every epoch) trained plain,
   with a thread that redraws the curves of its history as the publisher does (every 5 s, its
   ``checkpoints_interval``, or less often so that drawing takes at most 2% of the time:
   :func:`~prefect_torch.orchestration.artifacts.curves_delay`), every 5 s whatever a drawing
   costs, and back to back (the worst case, far beyond what the publisher does). Interleaved rounds; the ratio of the per-epoch time
   to the plain run's is the slowdown. All three end with identical weights.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from typing import Any, Callable

import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration.artifacts import curve_images, curves_delay
from prefect_torch.orchestration.experiment_history import HistorySnapshots, epoch_snapshot, experiment_rows

CADENCE = 5.0  # seconds between two drawings in the publisher (ArtifactPublisher.checkpoints_interval)


def history_of(epochs: int) -> list[dict[str, Any]]:
    """A net-like history: losses, accuracy, flags, duration and a few batches per epoch."""
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"epoch": e, "train_loss": 1.0 / e ** 0.5, "valid_loss": 1.1 / e ** 0.5 + 0.01 * (e % 7),
                     "valid_acc": 1 - 0.5 / e ** 0.3, "valid_loss_best": e % 5 == 0, "dur": 0.05,
                     "event_cp": True, "train_batch_count": 8, "valid_batch_count": 2,
                     "batches": [{"train_loss": 0.5, "train_batch_size": 128} for _ in range(8)]})
    return rows


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - began)
    return seconds, result


def ms(values: list[float]) -> str:
    return f"{min(values) * 1e3:.1f} ({statistics.median(values) * 1e3:.1f})"


def cost_per_update(sizes: list[int], repeat: int) -> None:
    print("per update, ms: best (median)")
    print(f"{'epochs':>7} | {'snapshot (training thread)':>27} | {'history rows':>13} | {'curves':>15} | images")
    for epochs in sizes:
        history = history_of(epochs)
        snapshots = HistorySnapshots()
        snapshots.take(history[:-1])  # the driver's snapshots: taken after every task, so one epoch is new
        snap_s, snapshot = timed(lambda: snapshots.take(history), repeat)
        rows_s, _ = timed(lambda: experiment_rows(snapshot, None), repeat)
        draw_s, (images, note) = timed(lambda: curve_images(snapshot, None), repeat)
        if not images:
            raise SystemExit(f"no curves drawn ({note}); install the plot extra: pip install 'prefect-torch[plot]'")
        size = sum(len(image) for image in images.values())
        print(f"{epochs:>7} | {ms(snap_s):>27} | {ms(rows_s):>13} | {ms(draw_s):>15} | "
              f"{len(images)} PNG, {size / 1000:.0f} kB of markdown")


def train(epochs: int, drawing: str, folder: str) -> tuple[float, list[torch.Tensor], int]:
    """Seconds per epoch of a fit with ``drawing`` beside it: 'none'; 'publisher' (the helper
    thread's policy, :func:`curves_delay`); 'cadence' (every 5 s, whatever a drawing costs);
    'continuous' (back to back)."""
    X, y = make_data(6000)
    net = NeuralNetClassifier(MyModule, max_epochs=epochs, lr=0.1, batch_size=128, verbose=0,
                              callbacks=[Checkpoint(monitor=None, dirname=tempfile.mkdtemp(dir=folder))])
    stop, draws = threading.Event(), [0]

    def draw_beside() -> None:  # as the publisher does: from a snapshot of the finished epochs, on its own thread
        while not stop.is_set():
            finished = list(getattr(net, "history_", None) or [])[:-1]  # the last epoch may be in progress
            began = time.perf_counter()
            images = curve_images(epoch_snapshot(finished), None)[0] if finished else {}
            seconds = time.perf_counter() - began
            draws[0] += bool(images)
            if not images:
                stop.wait(0.01)
            elif drawing == "cadence":
                stop.wait(CADENCE)
            elif drawing == "publisher":
                stop.wait(curves_delay(seconds, CADENCE))

    helper = threading.Thread(target=draw_beside, daemon=True) if drawing != "none" else None
    torch.manual_seed(0)
    began = time.perf_counter()
    if helper is not None:
        helper.start()
    net.fit(X, y)
    seconds = time.perf_counter() - began
    stop.set()
    if helper is not None:
        helper.join()
    return seconds / epochs, [p.detach().clone() for p in net.module_.parameters()], draws[0]


def training_slowdown(epochs: int, rounds: int) -> None:
    kinds = ["none", "publisher", "cadence", "continuous"]
    per_epoch: dict[str, list[float]] = {k: [] for k in kinds}
    draws: dict[str, list[int]] = {k: [] for k in kinds}
    weights: dict[str, list[torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as folder:
        train(3, "none", folder)  # warm-up
        for r in range(rounds):
            for kind in kinds[r % 4:] + kinds[:r % 4]:
                seconds, params, n = train(epochs, kind, folder)
                per_epoch[kind].append(seconds)
                draws[kind].append(n)
                weights[kind] = params
    same = all(all(torch.equal(a, b) for a, b in zip(weights["none"], weights[k])) for k in kinds)
    base = min(per_epoch["none"])
    print(f"\ntraining {epochs} epochs, ms per epoch: best (median); ratio of the best to plain's")
    labels = ["plain", "as the publisher draws", f"curves every {CADENCE:.0f} s", "curves back to back"]
    for kind, label in zip(kinds, labels):
        print(f"  {label:<24} {ms(per_epoch[kind]):>15}  x{min(per_epoch[kind]) / base:.3f}  "
              f"({statistics.median(draws[kind]):.0f} drawings per fit)")
    print(f"  identical weights: {same}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes, one round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=120, help="epochs of the training runs (default 120)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeat = 1 if args.quick else args.repeat
    cost_per_update([10, 100] if args.quick else [10, 100, 1000], max(repeat, 2))
    training_slowdown(20 if args.quick else args.epochs, repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
