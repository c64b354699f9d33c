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
import pickle
from typing import IO, Any


def _select(row: Any, key: Any) -> Any:
    """``row[key]``; a tuple (a list) of keys gives a tuple (a list) of values."""
    if isinstance(key, (tuple, list)):
        return type(key)(row[k] for k in key)
    return row[key]


def _check_depth(keys: tuple) -> None:
    """At most ``[epochs, key, batches, key]``, and the batch levels only below ``"batches"``."""
    if len(keys) > 4:
        raise KeyError(f"Tried to index history with {len(keys)} indices but only 4 indices are possible.")
    if len(keys) > 2 and keys[1] != "batches":
        raise KeyError("History indexing beyond the 2nd level is only possible if key 'batches' is used, "
                       f"found key {keys[1]!r}.")


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
        selected = rows[head]
        found = []
        for row in selected:
            try:
                found.append(_lookup(row, rest))
            except (KeyError, IndexError):
                pass
        if not found and (selected or rest[0] != "batches"):  # every epoch has "batches", even none
            missing = next((k for k in reversed(rest) if isinstance(k, (str, list, tuple))), rest[0])
            raise KeyError(f"Key {missing!r} was not found in history.")
        return found
    try:
        value = _select(rows, head)
    except (KeyError, TypeError):
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
        _check_depth(index)
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


class DistributedHistory:
    """A :class:`History` whose batch records are shared by the processes of one distributed run.

    With ``DistributedDataParallel`` each process sees only its own batches, so each would keep
    a different history (and, say, stop early at a different epoch). This history writes every
    ``record_batch`` to a ``torch.distributed`` key-value store (e.g. ``TCPStore``) and, before
    it is read, replays all processes' batches into the local :class:`History`, in a stable
    order (batch, then rank, then key): every process reads the same ``history[:, "batches"]``.
    Epoch-level records stay local (a process's own ``dur``, say).

    Values make a JSON round trip through the store (numpy arrays do not survive it). The store
    cannot be pickled: a pickled history drops it (``store`` is ``None`` after unpickling; set
    it again before training on).

    Parameters
    ----------
    *args
        Initial epochs, as for :class:`History`.
    store : torch.distributed.Store
        Shared by all processes.
    rank : int
        This process's rank, ``0 .. world_size - 1``.
    world_size : int
        Number of processes; a wrong value makes reads wait for records never written.

    Examples
    --------
    >>> from torch.distributed import HashStore
    >>> h = DistributedHistory(store=HashStore(), rank=0, world_size=1)
    >>> h.new_epoch(); h.new_batch(); h.record_batch("train_loss", 0.25)
    >>> h[-1, "batches", -1, "train_loss"]
    0.25
    """

    def __init__(self, *args: Any, store: Any, rank: int, world_size: int):
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self._history = History(*args)
        self._batch = 0
        self._pending: list[tuple[int, int, int, str]] = []

    @property
    def history(self) -> History:
        """The local :class:`History`, with every process's batches synced in."""
        self.sync()
        return self._history

    def new_epoch(self) -> None:
        self.sync()
        self._history.new_epoch()
        self._batch = 0

    def new_batch(self) -> None:
        self.sync()
        self._history.new_batch()
        self._batch += 1

    def record(self, key: str, value: Any) -> None:
        self._history.record(key, value)

    def record_batch(self, key: str, value: Any) -> None:
        """Write the value to the store; every process reads it back at the next sync."""
        epoch = len(self._history)
        self.store.set(json.dumps([epoch, self._batch, self.rank, key]), json.dumps(value))
        self._pending.extend((epoch, self._batch, rank, key) for rank in range(self.world_size))

    def sync(self) -> None:
        """Replay the batch records of all processes written since the last sync (waits for them)."""
        if not self._pending:
            return
        keys = sorted(self._pending)
        names = [json.dumps(list(key)) for key in keys]
        self.store.wait(names)
        previous = keys[0][1:3]
        for (_, batch, rank, attr), name in zip(keys, names):
            if (batch, rank) != previous:  # the next process's (or the next) batch starts
                self._history.new_batch()
                previous = (batch, rank)
            self._history.record_batch(attr, json.loads(self.store.get(name)))
        self._pending.clear()

    def __getitem__(self, index: Any) -> Any:
        return self.history[index]

    def __len__(self) -> int:
        return len(self.history)

    def to_list(self) -> list[dict]:
        return self.history.to_list()

    def to_file(self, f: str | os.PathLike | IO[str]) -> None:
        self.history.to_file(f)

    @classmethod
    def from_file(cls, f: Any) -> "DistributedHistory":
        raise NotImplementedError(
            "DistributedHistory cannot be read from a file (it needs a store); load a History "
            "with History.from_file and pass its epochs: DistributedHistory(history, store=..., ...)")

    def __delitem__(self, index: Any) -> None:
        raise NotImplementedError("DistributedHistory does not support deleting epochs")

    def clear(self) -> None:
        self.history.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        try:
            pickle.dumps(state["store"])
        except (TypeError, pickle.PicklingError):
            state["store"] = None  # TCPStore and FileStore cannot be pickled
        return state
