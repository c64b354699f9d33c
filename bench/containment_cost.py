"""Containment cost: what the store's checks of untrusted entries add to a commit, against the commit.

Run from the repository root, in the project's virtualenv::

    python bench/containment_cost.py                 # a 1 MB and a 20 MB model, 15 commits each
    python bench/containment_cost.py --sizes 100 --commits 10 --dir /mnt/fast

What is measured
----------------
A :class:`~prefect_torch.checkpoint.CheckpointStore` with ``keep_last=3`` commits, ``--commits``
times, the files a ``Checkpoint`` writes for a model of the given size (``params.pt``,
``optimizer.pt`` of the same size, ``history.json``, a small ``train_state.pt``); the median
commit is the baseline. In the same process, the work a commit now does for containment is timed
on its own (median of 2,000 runs of each part), on the manifest that store really holds:

* ``validating parse x2`` -- ``Manifest.from_json`` (read before the commit and again before
  pruning) minus the same parse without checks (``json.loads`` and the dataclasses, as before);
* ``manifest re-read``    -- reading the manifest once more before pruning;
* ``new version check``   -- validating the new version before anything is written;
* ``link checks``         -- the ``lstat`` calls counted during one real commit, times one ``lstat``.

The ratio (sum / commit) is the figure to watch: containment must cost a few percent of a commit
at most. On a loaded machine both sides slow down; the ratio is steadier than either.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from prefect_torch.checkpoint import CheckpointStore, FileEntry, Manifest, PendingFile, Version

MB = 10**6


def median_time(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def unchecked_parse(raw: bytes) -> Manifest:
    """The manifest parse as it was before the checks: JSON and dataclasses, nothing else."""
    data = json.loads(raw)
    versions = [Version(**{**v, "files": {n: FileEntry(**e) for n, e in v["files"].items()}})
                for v in data["versions"]]
    return Manifest(prefix=data["prefix"], versions=versions, current=data["current"], best=data["best"],
                    next_id=data["next_id"], generation=data["generation"], writer=data["writer"],
                    claims=data["claims"])


def pending_files(megabytes: float, epoch: int) -> list[PendingFile]:
    weights = {"w": torch.full((int(megabytes * MB / 4),), float(epoch))}
    history = json.dumps([{"epoch": e, "train_loss": 1 / e} for e in range(1, epoch + 1)]).encode()
    return [PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f)),
            PendingFile("optimizer.pt", "f_optimizer", lambda f: torch.save(weights, f)),
            PendingFile("history.json", "f_history", lambda f: f.write(history)),
            PendingFile("train_state.pt", "f_train_state", lambda f: torch.save({"seed": epoch}, f))]


def measure(megabytes: float, commits: int, folder: Path) -> dict[str, float]:
    store = CheckpointStore(folder, keep_last=3)
    times = []
    for epoch in range(1, commits + 1):
        files = pending_files(megabytes, epoch)
        os.sync()
        start = time.perf_counter()
        store.commit(files, epoch=epoch, metrics={"train_loss": 1 / epoch, "valid_loss": 1 / epoch})
        times.append(time.perf_counter() - start)

    calls = 0
    real_islink = os.path.islink

    def counting_islink(path: Any) -> bool:
        nonlocal calls
        calls += 1
        return real_islink(path)

    os.path.islink = counting_islink
    try:
        store.commit(pending_files(megabytes, commits + 1), epoch=commits + 1)
    finally:
        os.path.islink = real_islink

    raw = store.location.read_bytes(store.manifest_name)
    files = pending_files(megabytes, commits + 2)
    folder_rel = f"versions/epoch-{commits + 2:06d}-abcdef"
    parts = {
        "validating parse x2": 2 * max(0.0, median_time(lambda: Manifest.from_json(raw, ""), 2000)
                                       - median_time(lambda: unchecked_parse(raw), 2000)),
        "manifest re-read": median_time(lambda: store.location.read_bytes(store.manifest_name), 2000),
        "new version check": median_time(lambda: store._check_new_version(files, commits + 2, folder_rel, {}), 2000),
        "link checks": calls * median_time(lambda: real_islink(str(folder)), 2000),
    }
    return {"commit": statistics.median(times), "lstat calls": calls, **parts,
            "containment": sum(parts.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,20", help="model sizes in MB, comma-separated")
    parser.add_argument("--commits", type=int, default=15)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | commit (ms) | lstat calls | validating parse x2 (us) | manifest re-read (us) "
          "| new version check (us) | link checks (us) | containment / commit |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (float(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            r = measure(size, args.commits, Path(folder))
        us = {k: f"{v * 1e6:.0f}" for k, v in r.items() if k not in ("commit", "lstat calls")}
        print(f"| {size:g} MB | {r['commit'] * 1e3:.1f} | {r['lstat calls']:.0f} | {us['validating parse x2']} "
              f"| {us['manifest re-read']} | {us['new version check']} | {us['link checks']} "
              f"| {r['containment'] / r['commit']:.2%} |")
    print(f"note: load average {os.getloadavg()} on {os.cpu_count()} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
