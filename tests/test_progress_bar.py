"""ProgressBar: one tqdm bar per epoch, its total, its postfix, and what it writes."""
from __future__ import annotations

import pickle

import pytest

from helpers import fit, make_net
from prefect_torch import ValidSplit
from prefect_torch.callbacks import Callback, ProgressBar
from prefect_torch.examples import make_data

X, y = make_data(200)  # 160 train / 40 valid with the default split


class Probe(Callback):
    """After ProgressBar in each hook: the live bar's count, total and postfix."""

    def initialize(self):
        self.batches_ = []
        self.totals_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.totals_.append(dict(net.callbacks_)["ProgressBar"].pbar_.total)

    def on_batch_end(self, net, **kwargs):
        bar = dict(net.callbacks_)["ProgressBar"].pbar_
        self.batches_.append((bar.n, bar.postfix))


def fit_with_bar(bar, **kwargs):
    probe = Probe()
    net = fit(make_net(max_epochs=2, callbacks=[bar, probe], **kwargs), X, y)
    return net, probe


@pytest.mark.parametrize("scheme, totals", [
    ("auto", [3 + 1, 3 + 1]),  # 160 / 64 -> 3 train batches, 40 / 64 -> 1 valid batch
    ("count", [None, 4]),
    (None, [None, None]),
    (7, [7, 7]),
])
def test_totals(scheme, totals):
    _, probe = fit_with_bar(ProgressBar(batches_per_epoch=scheme))
    assert probe.totals_ == totals


def test_auto_total_uses_each_phases_batch_size_and_drop_last():
    _, probe = fit_with_bar(ProgressBar(), iterator_train__batch_size=50, iterator_train__drop_last=True,
                            iterator_valid__batch_size=-1)
    assert probe.totals_ == [3 + 1, 3 + 1]  # 160 // 50 train batches, the whole valid set in one
    _, probe = fit_with_bar(ProgressBar(), train_split=None, batch_size=30)
    assert probe.totals_ == [7, 7]  # all 200 samples, ceil(200 / 30)


def test_count_and_postfix_follow_the_batches():
    net, probe = fit_with_bar(ProgressBar(postfix_keys=["train_loss", "valid_loss", "missing"]))
    assert [n for n, _ in probe.batches_] == [1, 2, 3, 4, 1, 2, 3, 4]
    last_train = net.history[-1, "batches", 2, "train_loss"]
    last_valid = net.history[-1, "batches", 3, "valid_loss"]
    assert probe.batches_[6][1] == f"train_loss={last_train:.3f}"  # tqdm's format for floats
    assert probe.batches_[7][1] == f"valid_loss={last_valid:.3f}"


def test_default_postfix_and_a_single_key():
    _, probe = fit_with_bar(ProgressBar())
    assert probe.batches_[0][1].startswith("train_loss=")
    _, probe = fit_with_bar(ProgressBar(postfix_keys="train_batch_size"))
    assert [p for _, p in probe.batches_][:4] == ["train_batch_size=64", "train_batch_size=64",
                                                  "train_batch_size=32", ""]


def test_bar_is_written_to_stderr_and_closed(capsys):
    net, _ = fit_with_bar(ProgressBar(), train_split=ValidSplit(4))
    err = capsys.readouterr().err
    assert err.count("0/4") == 2  # drawn at each epoch's start, total known
    bar = dict(net.callbacks_)["ProgressBar"].pbar_
    assert bar.n == 4 and bar.total == 4
    assert bar.disable  # closed at the epoch's end


@pytest.mark.parametrize("bad", ["often", -1, 2.5, True])
def test_bad_batches_per_epoch_is_refused(bad):
    with pytest.raises(ValueError, match="batches_per_epoch"):
        make_net(callbacks=[ProgressBar(batches_per_epoch=bad)]).initialize()


def test_pickle_after_fit_and_before():
    net, _ = fit_with_bar(ProgressBar())
    restored = pickle.loads(pickle.dumps(net))
    assert "pbar_" not in vars(dict(restored.callbacks_)["ProgressBar"])
    restored.partial_fit(X, y, epochs=1)
    assert len(restored.history) == 3
    pickle.loads(pickle.dumps(make_net(callbacks=[ProgressBar()])))
