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


class DistributedHistory(History):
    """A :class:`History` kept identical across the processes of one distributed training run
    (``DistributedDataParallel``, ``accelerate``), for callbacks that steer training from it.

    Each process sees only its own batches; their batch records go through a
    ``torch.distributed`` key-value store (``TCPStore``, ``FileStore``, ``HashStore``), and every
    read or new batch first collects the records of all ranks, so each process's history holds
    every rank's batches, ordered by batch, then rank, then key. Epoch values stay per process.
    Values make a JSON round trip. Pass it to the net: ``NeuralNet(..., history=dist_history)``.

    Parameters
    ----------
    *args
        Rows to start from, as for a list.
    store : torch.distributed.Store
        The store shared by all processes.
    rank : int
        This process's rank, ``0 <= rank < world_size``.
    world_size : int
        The number of processes; each must record the same batches, or the reads wait (the
        store's timeout applies).

    >>> import datetime
    >>> from torch.distributed import HashStore
    >>> h = DistributedHistory(store=HashStore(), rank=0, world_size=1)
    >>> h.new_epoch(); h.new_batch(); h.record_batch("train_loss", 0.5)
    >>> h[-1, "batches", -1, "train_loss"]
    0.5

    A pickled copy drops a store that cannot be pickled (``TCPStore``); set ``store`` again
    before training with it.
    """

    def __init__(self, *args: Any, store: Any, rank: int, world_size: int):
        super().__init__(*args)
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self._batch = 0  # batches begun in the current epoch
        self._pending: list[list] = []  # batch records of all ranks not read back yet

    @property
    def history(self) -> "DistributedHistory":
        """This history, with every rank's records read in."""
        self.sync()
        return self

    def sync(self) -> None:
        """Read every rank's batch records written since the last sync into this history."""
        if not self._pending:
            return
        keys = sorted(self._pending)
        names = [json.dumps(key) for key in keys]
        self.store.wait(names)
        self._pending = []
        batches = list.__getitem__(self, -1)["batches"]
        previous = None
        for (_, batch, rank, attr), name in zip(keys, names):
            if previous is not None and previous != (batch, rank):
                batches.append({})  # the next rank's batch, or the next batch
            previous = (batch, rank)
            batches[-1][attr] = json.loads(self.store.get(name))

    def new_epoch(self) -> None:
        self.sync()
        super().new_epoch()
        self._batch = 0

    def new_batch(self) -> None:
        self.sync()
        super().new_batch()
        self._batch += 1

    def record_batch(self, key: str, value: Any) -> None:
        """Write the value to the store; it lands in the history (of every rank) at the next sync."""
        epoch = super().__len__()
        self.store.set(json.dumps([epoch, self._batch, self.rank, key]), json.dumps(value))
        self._pending.extend([epoch, self._batch, rank, key] for rank in range(self.world_size))

    def clear(self) -> None:
        super().clear()
        self._batch = 0
        self._pending = []

    def __len__(self) -> int:
        self.sync()
        return super().__len__()

    def __iter__(self) -> Any:
        self.sync()
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        self.sync()
        return super().__getitem__(index)

    @classmethod
    def from_file(cls, f: Any) -> "History":
        raise NotImplementedError(
            "DistributedHistory.from_file: a saved history has no store; load it with "
            "History.from_file(f) instead"
        )

    def __getstate__(self) -> dict:
        self.sync()  # a copy holds every record read so far, and waits for none
        state = dict(self.__dict__)
        try:
            pickle.dumps(state["store"])
        except (TypeError, pickle.PicklingError, AttributeError):
            state["store"] = None  # TCPStore and FileStore cannot be pickled
        return state
