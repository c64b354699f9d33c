"""DistributedHistory: batch records shared through a torch.distributed store, so every
process's history holds every rank's batches; used by the net through ``history=``."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch.distributed import HashStore

from helpers import fit, make_net
from prefect_torch import History
from prefect_torch.examples import make_data
from prefect_torch.history import DistributedHistory

X, y = make_data(200)


def histories(world_size):
    store = HashStore()
    return [DistributedHistory(store=store, rank=rank, world_size=world_size) for rank in range(world_size)]


def test_every_rank_sees_every_ranks_batches_in_order():
    ranks = histories(3)
    for h in ranks:
        h.new_epoch()
        h.record("epoch", 1)
    for batch in range(2):
        for rank, h in enumerate(ranks):
            h.new_batch()
            h.record_batch("loss", 10 * batch + rank)
            h.record_batch("size", rank)
    expected = [{"loss": 10 * b + r, "size": r} for b in range(2) for r in range(3)]
    for h in ranks:
        assert h[-1, "batches"] == expected
        assert h[:, "batches", :, "loss"] == [[0, 1, 2, 10, 11, 12]]
        assert h.to_list() == [{"batches": expected, "epoch": 1}]
    ranks[1].record("dur", 0.5)  # epoch values stay per process
    assert "dur" not in ranks[0][-1] and ranks[1][-1, "dur"] == 0.5


def test_one_process_equals_a_plain_history():
    plain, (dist,) = History(), histories(1)
    for h in (plain, dist):
        for epoch in range(2):
            h.new_epoch()
            h.record("epoch", epoch + 1)
            for batch in range(3):
                h.new_batch()
                h.record_batch("train_loss", 0.5 * batch)
    assert dist.to_list() == plain.to_list() and len(dist) == 2 and list(dist) == list(plain)
    assert DistributedHistory([1, 2, 3], store=HashStore(), rank=0, world_size=1).to_list() == [1, 2, 3]


def test_pickle_drops_a_store_it_cannot_pickle_and_from_file_is_refused(tmp_path):
    (h,) = histories(1)
    h.new_epoch()
    h.new_batch()
    h.record_batch("loss", 1.0)
    restored = pickle.loads(pickle.dumps(h))
    assert restored.store is None and restored.to_list() == h.to_list()
    h.to_file(tmp_path / "h.json")
    assert History.from_file(tmp_path / "h.json") == h.to_list()
    with pytest.raises(NotImplementedError, match="History.from_file"):
        DistributedHistory.from_file(tmp_path / "h.json")


def test_net_trains_with_a_distributed_history_like_with_a_plain_one():
    (dist,) = histories(1)
    net = fit(make_net(history=dist), X, y)
    plain = fit(make_net(), X, y)
    assert net.history is dist  # kept through initialize(), cleared and filled
    assert len(dist) == 2
    drop = {"dur"}
    assert [{k: v for k, v in row.items() if k not in drop} for row in dist] == \
        [{k: v for k, v in row.items() if k not in drop} for row in plain.history]
    for a, b in zip(net.module_.parameters(), plain.module_.parameters()):
        assert torch.equal(a, b)
    net.fit(X, y)  # a new fit clears it again
    assert net.history is dist and len(dist) == 2
    assert "history" not in net.get_params()
