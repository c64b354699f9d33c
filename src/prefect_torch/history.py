"""Training history: one dict per epoch, each with a list of batch dicts.

Indexing follows the epoch/key/batch/key pattern:

>>> h = History()
>>> h.new_epoch(); h.record("epoch", 1); h.record("valid_loss", 0.5)
>>> h.new_batch(); h.record_batch("train_loss", 0.7)
>>> h[-1, "valid_loss"], h[:, "epoch"], h[-1, "batches", -1, "train_loss"]
(0.5, [1], 0.7)
"""
from __future__ import annotations

import json
import os
from typing import IO, Any


def _select(row: Any, key: Any) -> Any:
    """``row[key]`` where ``key`` may be a tuple of keys (giving a tuple of values)."""
    if isinstance(key, tuple):
        return tuple(row[k] for k in key)
    return row[key]


def _lookup(rows: Any, keys: tuple) -> Any:
    """Walk ``keys`` through nested lists of dicts; slices map over lists and drop rows lacking a key."""
    if not keys:
        return rows
    head, rest = keys[0], keys[1:]
    if isinstance(rows, list):
        if not isinstance(head, slice):
            return _lookup(rows[head], rest)
        if not rest:
            return rows[head]
        found, missing = [], None
        for row in rows[head]:
            try:
                found.append(_lookup(row, rest))
            except (KeyError, IndexError) as error:
                missing = error
        if not found:
            raise missing if isinstance(missing, KeyError) else KeyError(
                f"no history row in {head} has the key {rest[0]!r}"
            )
        return found
    try:
        value = _select(rows, head)
    except KeyError:
        raise KeyError(f"key {head!r} is not in this history row; it has {sorted(rows)}") from None
    return _lookup(value, rest)


def epoch_metrics(row: dict) -> dict[str, float]:
    """The numbers an epoch row holds (losses, scores, ``dur``), without its number, flags
    (``*_best``, ``event_*``), batch counts and batches.

    >>> epoch_metrics({"epoch": 2, "valid_loss": 0.5, "valid_loss_best": True, "train_batch_count": 4, "batches": []})
    {'valid_loss': 0.5}
    """
    return {k: v for k, v in row.items()
            if k not in ("batches", "epoch") and not k.endswith("_batch_count")
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


class History(list):
    """A list of epoch dicts; ``history[epochs, key, batches, key]`` reads values out of it."""

    def new_epoch(self) -> None:
        self.append({"batches": []})

    def new_batch(self) -> None:
        self[-1]["batches"].append({})

    def record(self, key: str, value: Any) -> None:
        if not self:
            raise ValueError("call new_epoch() before recording values in the history")
        self[-1][key] = value

    def record_batch(self, key: str, value: Any) -> None:
        self[-1]["batches"][-1][key] = value

    def to_list(self) -> list[dict]:
        return list(self)

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, tuple):
            return super().__getitem__(index)
        return _lookup(list(self), index)

    def to_file(self, f: str | os.PathLike | IO[str]) -> None:
        """Write the history as a JSON list of epoch dicts."""
        if isinstance(f, (str, os.PathLike)):
            with open(f, "w", encoding="utf-8") as handle:
                json.dump(self.to_list(), handle)
        else:
            json.dump(self.to_list(), f)

    @classmethod
    def from_file(cls, f: str | os.PathLike | IO[str]) -> "History":
        """Read a history written by :meth:`to_file` (or by skorch)."""
        if isinstance(f, (str, os.PathLike)):
            with open(f, encoding="utf-8") as handle:
                return cls(json.load(handle))
        return cls(json.load(f))
