"""History: indexing by epoch/key/batch/key, and the JSON file format shared with skorch."""
import io
import json
import pathlib

import numpy as np
import pytest
import torch

from prefect_torch import History, NeuralNetClassifier
from prefect_torch.examples import MyModule, make_data


def build(cls=History):
    """Three epochs; 'a' only from the second epoch on, 'only1' only in each epoch's second batch,
    'late' only in the batches of the last epoch."""
    h = cls()
    for e in range(3):
        h.new_epoch()
        h.record("epoch", e + 1)
        if e > 0:
            h.record("a", e * 1.5)
        h.record("b", e)
        for b in range(2):
            h.new_batch()
            h.record_batch("loss", e * 10 + b)
            if b == 1:
                h.record_batch("only1", 100 + e)
            if e == 2:
                h.record_batch("late", b)
    return h


@pytest.fixture
def h():
    return build()


# -- indexing -------------------------------------------------------------------------------
def test_history_is_a_list_of_epoch_dicts(h):
    assert isinstance(h, list)
    assert len(h) == 3
    assert h[0] == {"batches": [{"loss": 0}, {"loss": 1, "only1": 100}], "epoch": 1, "b": 0}
    assert h[-1]["a"] == 3.0


def test_single_row_key(h):
    assert h[-1, "a"] == 3.0
    assert h[1, "a"] == 1.5
    assert h[0, "epoch"] == 1


def test_slice_of_key(h):
    assert h[:, "epoch"] == [1, 2, 3]
    assert h[1:, "b"] == [1, 2]
    assert h[::2, "epoch"] == [1, 3]
    assert h[-2:, "epoch"] == [2, 3]


def test_tuple_of_keys(h):
    assert h[-1, ("a", "b")] == (3.0, 2)
    assert h[:, ("epoch", "b")] == [(1, 0), (2, 1), (3, 2)]


def test_slice_skips_rows_without_key(h):
    # epoch 1 has no 'a': it is left out, not filled in
    assert h[:, "a"] == [1.5, 3.0]
    # with a tuple, a row lacking any of the keys is left out
    assert h[:, ("a", "epoch")] == [(1.5, 2), (3.0, 3)]


def test_slice_raises_keyerror_when_no_row_has_key(h):
    with pytest.raises(KeyError):
        h[:, "nope"]
    with pytest.raises(KeyError):
        h[:1, "a"]  # the only selected row lacks 'a'


def test_single_row_missing_key_raises_keyerror(h):
    with pytest.raises(KeyError):
        h[0, "a"]
    with pytest.raises(KeyError):
        h[-1, ("a", "nope")]


def test_row_index_out_of_range(h):
    with pytest.raises(IndexError):
        h[5, "epoch"]


def test_batch_level_single(h):
    assert h[-1, "batches", -1, "loss"] == 21
    assert h[0, "batches", 0, "loss"] == 0
    assert h[1, "batches", -1, "only1"] == 101


def test_batch_level_slices(h):
    assert h[:, "batches", :, "loss"] == [[0, 1], [10, 11], [20, 21]]
    assert h[-1, "batches", :, "loss"] == [20, 21]
    assert h[:, "batches", -1, "loss"] == [1, 11, 21]
    assert h[:, "batches", :, ("loss", "only1")] == [[(1, 100)], [(11, 101)], [(21, 102)]]


def test_batch_level_slices_skip_batches_without_key(h):
    assert h[:, "batches", :, "only1"] == [[100], [101], [102]]
    assert h[-1, "batches", :, "only1"] == [102]


def test_batch_level_slices_skip_epochs_without_key(h):
    # only the last epoch's batches hold 'late'; skorch gives [[0, 1]] here too
    assert h[:, "batches", :, "late"] == [[0, 1]]


def test_batch_level_missing_everywhere_raises_keyerror(h):
    with pytest.raises(KeyError):
        h[:, "batches", :, "nope"]
    with pytest.raises(KeyError):
        h[-1, "batches", :, "nope"]
    with pytest.raises(KeyError):
        h[-1, "batches", -1, "nope"]
    with pytest.raises(KeyError):
        h[:, "batches", 0, "only1"]  # no epoch's first batch has it


def test_batch_level_keyerror_names_the_missing_key(h):
    with pytest.raises(KeyError, match="nope"):
        h[:, "batches", :, "nope"]


def test_plain_list_indexing_still_works(h):
    assert h[0]["epoch"] == 1
    assert [row["epoch"] for row in h[1:]] == [2, 3]


def test_record_before_new_epoch_raises():
    with pytest.raises(ValueError):
        History().record("a", 1)


def test_indexing_matches_skorch():
    skorch_history = pytest.importorskip("skorch.history")
    ours, theirs = build(), build(skorch_history.History)
    assert ours == list(theirs)
    full = slice(None)
    for index in [
        (-1, "a"), (full, "a"), (full, ("a", "b")), (full, "batches", full, "loss"),
        (-1, "batches", -1, "loss"), (full, "batches", full, "only1"), (full, "batches", -1, "loss"),
        (-1, "batches", full, "loss"), (full, "batches", full, "late"), (slice(1, None), "epoch"),
    ]:
        assert ours[index] == theirs[index], index
    for index in [(0, "a"), (full, "nope"), (full, "batches", full, "nope"), (slice(0, 1), "a")]:
        with pytest.raises(KeyError):
            theirs[index]
        with pytest.raises(KeyError):
            ours[index]


# -- files ----------------------------------------------------------------------------------
def test_to_file_from_file_path(h, tmp_path):
    path = str(tmp_path / "history.json")
    h.to_file(path)
    loaded = History.from_file(path)
    assert isinstance(loaded, History)
    assert loaded == h
    assert loaded[:, "batches", :, "loss"] == h[:, "batches", :, "loss"]
    # it is plain JSON: a list of epoch dicts
    with open(path) as f:
        assert json.load(f) == list(h)


def test_to_file_from_file_file_object(h):
    buffer = io.StringIO()
    h.to_file(buffer)
    buffer.seek(0)
    loaded = History.from_file(buffer)
    assert loaded == h
    assert loaded[-1, "a"] == 3.0


def test_to_file_from_file_pathlib(h, tmp_path):
    path = tmp_path / "history.json"
    h.to_file(path)
    assert History.from_file(path) == h


def test_skorch_reads_our_file_and_we_read_skorchs(h, tmp_path):
    skorch_history = pytest.importorskip("skorch.history")
    ours_path = str(tmp_path / "ours.json")
    h.to_file(ours_path)
    theirs = skorch_history.History.from_file(ours_path)
    assert list(theirs) == list(h)
    assert theirs[:, "batches", :, "only1"] == h[:, "batches", :, "only1"]

    skorch_made = build(skorch_history.History)
    theirs_path = str(tmp_path / "theirs.json")
    skorch_made.to_file(theirs_path)
    loaded = History.from_file(theirs_path)
    assert loaded == list(skorch_made)
    assert loaded[:, "a"] == skorch_made[:, "a"]


def test_fitted_net_history_round_trips(tmp_path):
    X, y = make_data(200)
    torch.manual_seed(0)
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=2, verbose=0).fit(X, y)
    history = net.history
    assert len(history) == 2
    path = str(tmp_path / "net_history.json")
    history.to_file(path)
    loaded = History.from_file(path)
    assert loaded == history
    for key in ["epoch", "train_loss", "valid_loss", "valid_acc", "dur", "valid_loss_best"]:
        assert loaded[:, key] == history[:, key]
    assert loaded[:, "batches", :, "train_loss"] == history[:, "batches", :, "train_loss"]
    # every value is a plain JSON type (no numpy or torch scalars sneaked in)
    for row in history:
        for key, value in row.items():
            if key != "batches":
                assert type(value) in (int, float, bool, str), (key, type(value))
    # a fresh net can take the loaded history and index it like the original
    other = NeuralNetClassifier(MyModule, verbose=0).initialize()
    other.history = loaded
    assert other.history[-1, "epoch"] == 2
    np.testing.assert_array_equal(other.history[:, "train_loss"], history[:, "train_loss"])


def test_fitted_net_history_readable_by_skorch(tmp_path):
    skorch_history = pytest.importorskip("skorch.history")
    X, y = make_data(200)
    torch.manual_seed(0)
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=2, verbose=0).fit(X, y)
    path = pathlib.Path(tmp_path) / "h.json"
    net.history.to_file(str(path))
    theirs = skorch_history.History.from_file(str(path))
    assert theirs[:, "valid_loss"] == net.history[:, "valid_loss"]
    assert theirs[-1, "batches", 0, "train_batch_size"] == net.history[-1, "batches", 0, "train_batch_size"] == 128
    assert theirs[-1, "batches", -1, "valid_batch_size"] == net.history[-1, "batches", -1, "valid_batch_size"] == 40
