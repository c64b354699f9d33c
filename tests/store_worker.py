"""A checkpoint writer in its own process, driven by JSON lines on stdin (one reply per line).

Used by ``test_single_writer.py`` to make two real processes write one checkpoint directory:

- ``{"op": "open", "url": ..., "options": {...}, "keep_last": 1, "writer": {...}}``: a new store
  (a fresh writer, as a restarted process would be); ``"strip_conditions": true`` drops the
  ``If-Match`` / ``If-None-Match`` of every S3 write, like an endpoint that ignores them;
- ``{"op": "begin"}``, ``{"op": "claim", "label": {...}}``, ``{"op": "release"}``;
- ``{"op": "commit", "epoch": n, "at": t}``: commit a version at wall-clock time ``t``.

Each reply: ``{"ok": bool, "error": "...", "lost_swaps": n, "warnings": [...]}``.
"""
from __future__ import annotations

import json
import sys
import time
import warnings

import torch

from prefect_torch.checkpoint import CheckpointStore, PendingFile
from prefect_torch.checkpoint.location import FsspecLocation, WriteConflict

torch.set_num_threads(1)


def files(epoch: int) -> list[PendingFile]:
    weights = {"w": torch.full((64, 1024), float(epoch))}  # 256 KiB: uploads take a moment
    history = json.dumps([{"epoch": epoch}]).encode()
    return [PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f)),
            PendingFile("history.json", "f_history", lambda f: f.write(history))]


def strip_conditions(location: FsspecLocation) -> None:
    pipe_file = location.fs.pipe_file

    def unconditional(path, data, mode="overwrite", IfMatch=None, **kwargs):
        return pipe_file(path, data, **kwargs)

    location.fs.pipe_file = unconditional


class Worker:
    def __init__(self) -> None:
        self.store: CheckpointStore | None = None
        self.lost_swaps = 0

    def open(self, url: str, options: dict, keep_last: int | None, writer: dict,
             strip: bool = False) -> None:
        if strip:  # a file system of its own, so that the patch below stays with this store
            options = {**options, "skip_instance_cache": True}
        self.store = CheckpointStore(url, keep_last=keep_last, writer=writer, **options)
        location = self.store.location
        if strip:
            strip_conditions(location)  # type: ignore[arg-type]
        write_if_unchanged = location.write_if_unchanged

        def counted(rel, data, tag):
            try:
                return write_if_unchanged(rel, data, tag)
            except WriteConflict:
                self.lost_swaps += 1
                raise

        location.write_if_unchanged = counted  # type: ignore[method-assign]

    def run(self, command: dict) -> None:
        op = command["op"]
        if op == "open":
            self.open(command["url"], command.get("options", {}), command.get("keep_last"),
                      command.get("writer", {}), command.get("strip_conditions", False))
        elif op == "begin":
            self.store.begin()
        elif op == "claim":
            self.store.claim(command["label"])
        elif op == "release":
            self.store.release()
        elif op == "commit":
            delay = command.get("at", 0) - time.time()
            if delay > 0:
                time.sleep(delay)
            self.store.commit(files(command["epoch"]), epoch=command["epoch"])
        else:
            raise ValueError(f"unknown op {op!r}")


def main() -> None:
    worker = Worker()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        worker.lost_swaps = 0
        reply: dict = {"ok": True, "error": None}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                worker.run(command)
            except Exception as error:
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        reply["lost_swaps"] = worker.lost_swaps
        reply["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
