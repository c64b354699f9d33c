"""PrintLog: the epoch table (the format shown in the "Saving and Loading" guide)."""
import re
import sys

import pytest
import torch

from helpers import ANSI, HEADER, ROW, SEPARATOR
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, EpochScoring, LRScheduler, PrintLog
from prefect_torch.examples import MyModule


def make_net(cls=NeuralNetClassifier, **kwargs):
    kwargs.setdefault("lr", 0.5)
    kwargs.setdefault("max_epochs", 3)
    return cls(MyModule, **kwargs)


def fit(net, data, seed=0):
    torch.manual_seed(seed)
    return net.fit(*data)


def fit_with_sink(data, **kwargs):
    lines = []
    net = fit(make_net(callbacks__print_log__sink=lines.append, **kwargs), data)
    return net, lines


def column_spans(separator):
    return [m.span() for m in re.finditer(r"-+", separator)]


def cells(line, separator):
    return [line[start:end] for start, end in column_spans(separator)]


class RecordEvent(Callback):
    """Records event_cp (True on odd epochs) like a checkpoint callback would."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("event_cp", len(net.history) % 2 == 1)


# -- the table for the classifier ----------------------------------------------------------
def test_classifier_table_shape(data):
    net, lines = fit_with_sink(data, max_epochs=3)
    assert len(lines) == 2 + 3
    assert lines[0] == HEADER
    assert lines[1] == SEPARATOR
    for epoch, line in enumerate(lines[2:], 1):
        match = ROW.match(line)
        assert match, line
        assert int(match.group(1)) == epoch
        row = net.history[epoch - 1]
        assert match.group(2) == f"{row['train_loss']:.4f}"
        assert match.group(3) == f"{row['valid_acc']:.4f}"
        assert match.group(4) == f"{row['valid_loss']:.4f}"
        assert match.group(5) == f"{row['dur']:.4f}"
        assert not ANSI.search(line)


def test_separator_matches_column_widths(data):
    _, lines = fit_with_sink(data, max_epochs=2)
    header, separator = lines[0], lines[1]
    spans = column_spans(separator)
    assert [end - start for start, end in spans] == [7, 12, 11, 12, 6]
    # columns are separated by two spaces; each header name sits right-aligned in its column
    assert [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)] == [2, 2, 2, 2]
    assert [c.strip() for c in cells(header, separator)] == ["epoch", "train_loss", "valid_acc", "valid_loss", "dur"]
    for cell in cells(header, separator):
        assert cell == cell.strip().rjust(len(cell))


def test_rows_are_right_aligned(data):
    _, lines = fit_with_sink(data, max_epochs=2)
    separator = lines[1]
    for line in lines[2:]:
        assert len(line) == len(separator)
        for cell in cells(line, separator):
            assert cell.strip(), line
            assert cell == cell.strip().rjust(len(cell)), line


def test_header_printed_once_per_fit(data):
    net, lines = fit_with_sink(data, max_epochs=4)
    assert lines.count(HEADER) == 1 and lines.count(SEPARATOR) == 1
    assert len(lines) == 6
    net.partial_fit(*data)  # continues the same table
    assert lines.count(HEADER) == 1
    assert len(lines) == 6 + 4
    assert ROW.match(lines[-1]).group(1) == "8"
    lines.clear()
    fit(net, data)  # a new fit starts a new table
    assert lines[:2] == [HEADER, SEPARATOR]
    assert ROW.match(lines[2]).group(1) == "1"


def test_printed_to_stdout_by_default(data, capsys):
    fit(make_net(max_epochs=2), data)
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [HEADER, SEPARATOR]
    assert len(out) == 4
    assert all(ROW.match(line) for line in out[2:])


def test_verbose_zero_prints_nothing(data, capsys):
    fit(make_net(max_epochs=2, verbose=0), data)
    assert capsys.readouterr().out == ""


def test_custom_sink_receives_lines_even_when_not_verbose(data, capsys):
    """As in skorch: verbose silences print, but a sink the user chose still gets the table."""
    lines = []
    fit(make_net(max_epochs=2, verbose=0, callbacks__print_log__sink=lines.append), data)
    assert lines[0] == HEADER and len(lines) == 4
    assert capsys.readouterr().out == ""


# -- keys ---------------------------------------------------------------------------------
def test_keys_ignored(data):
    _, lines = fit_with_sink(data, max_epochs=2, callbacks__print_log__keys_ignored="dur")
    assert lines[0] == "  epoch    train_loss    valid_acc    valid_loss"
    assert lines[1] == "-------  ------------  -----------  ------------"
    _, lines = fit_with_sink(data, max_epochs=2, callbacks__print_log__keys_ignored=["dur", "valid_acc"])
    assert lines[0] == "  epoch    train_loss    valid_loss"
    assert len(lines[2].split()) == 3


def test_event_column_shows_plus_without_prefix(data):
    lines = []
    # the event is recorded before this PrintLog runs (the default print_log is replaced)
    fit(make_net(max_epochs=4, callbacks__print_log=None,
                 callbacks=[RecordEvent(), ("log", PrintLog(sink=lines.append))]), data)
    assert lines[0] == "  epoch    train_loss    valid_acc    valid_loss    cp     dur"
    assert lines[1] == "-------  ------------  -----------  ------------  ----  ------"
    separator = lines[1]
    marks = [cells(line, separator)[4] for line in lines[2:]]
    assert marks == ["   +", "    ", "   +", "    "]
    assert "event_" not in "\n".join(lines)


def test_table_lines_formatting():
    log = PrintLog().initialize()
    row = {"batches": [], "epoch": 12, "valid_loss": 0.123456, "valid_loss_best": True,
           "train_loss": 10.5, "train_batch_count": 3, "event_cp": False, "event_a": 1,
           "name": "abc", "dur": 1.0}
    header, separator, line = log.table_lines(row)
    # epoch first, metrics sorted (no _best flags, no batch counts), events sorted, dur last
    assert header.split() == ["epoch", "name", "train_loss", "valid_loss", "a", "cp", "dur"]
    assert [c.strip() for c in cells(line, separator)] == ["12", "abc", "10.5000", "0.1235", "1", "", "1.0"]
    assert [c.strip() for c in cells(header, separator)] == header.split()
    assert len(header) == len(separator) == len(line)
    # a cell grows to fit a long value
    _, separator, line = log.table_lines({"epoch": 1, "x": 123456789.5})
    assert line.split()[1] == "123456789.5000"
    assert len(line) == len(separator)


def test_table_lines_keys_ignored_and_floatfmt():
    log = PrintLog(keys_ignored=["b"], floatfmt=".2f").initialize()
    header, _, line = log.table_lines({"epoch": 1, "a": 0.123, "b": 0.5})
    assert header.split() == ["epoch", "a"]
    assert line.split() == ["1", "0.12"]


def test_numeric_event_value_is_printed():
    log = PrintLog().initialize()
    header, separator, line = log.table_lines({"epoch": 1, "event_lr": 0.5, "event_cp": True})
    assert header.split() == ["epoch", "cp", "lr"]
    assert line.split() == ["1", "+", "0.5000"]


def test_boolean_values_print_as_plus():
    log = PrintLog().initialize()
    _, separator, line = log.table_lines({"epoch": 1, "flag": True})
    assert line.split() == ["1", "+"]
    _, separator, line = log.table_lines({"epoch": 1, "flag": False})
    assert [c.strip() for c in cells(line, separator)] == ["1", ""]


def test_user_callback_keys_appear_in_default_table(data):
    net, lines = fit_with_sink(data, max_epochs=2, callbacks=[
        EpochScoring("f1", lower_is_better=False), RecordEvent()])
    assert lines[0].split() == ["epoch", "f1", "train_loss", "valid_acc", "valid_loss", "cp", "dur"]
    assert lines[2].split()[1] == f"{net.history[0, 'f1']:.4f}"
    assert lines[2].split()[5] == "+"


# -- highlighting ----------------------------------------------------------------------------
@pytest.fixture
def color_terminal(monkeypatch, capsys):
    """Makes sys.stdout claim to be a color terminal; call it inside the test (capsys swaps
    sys.stdout between fixture setup and the test call)."""
    def activate():
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm-256color")
        return capsys
    return activate


def test_highlight_best_values_on_color_terminal(data, color_terminal):
    color_terminal = color_terminal()
    assert sys.stdout.isatty()
    net = fit(make_net(max_epochs=4), data)
    out = color_terminal.readouterr().out.splitlines()
    assert out[0] == HEADER
    rows = out[2:]
    assert len(rows) == 4
    assert any(ANSI.search(line) for line in rows)
    for row, line in zip(net.history, rows):
        plain = ANSI.sub("", line)
        assert ROW.match(plain), plain
        for key in ("train_loss", "valid_acc", "valid_loss"):
            value = f"{row[key]:.4f}"
            colored = re.search(r"\x1b\[[0-9;]*m" + re.escape(value) + r"\x1b\[0m", line)
            assert bool(colored) == row[f"{key}_best"], (key, line)
        assert not re.search(r"\x1b\[[0-9;]*m" + re.escape(f"{row['dur']:.4f}"), line)
    # epoch 1 is always the best so far
    assert len(ANSI.findall(rows[0])) == 6


def test_no_highlight_in_a_sink_even_on_color_terminal(data, color_terminal):
    color_terminal = color_terminal()
    _, lines = fit_with_sink(data, max_epochs=3)
    assert not any(ANSI.search(line) for line in lines)
    assert color_terminal.readouterr().out == ""


def test_no_highlight_when_not_a_terminal(data, capsys):
    fit(make_net(max_epochs=2), data)
    assert not ANSI.search(capsys.readouterr().out)


def test_no_highlight_with_no_color(data, color_terminal, monkeypatch):
    color_terminal = color_terminal()
    monkeypatch.setenv("NO_COLOR", "1")
    fit(make_net(max_epochs=2), data)
    assert not ANSI.search(color_terminal.readouterr().out)


# -- compared with skorch ----------------------------------------------------------------------
def without_dur(lines):
    """Drop the values of the last (dur) column, keeping its header."""
    out = lines[:2]
    for line in lines[2:]:
        head, _, _ = ANSI.sub("", line).rstrip().rpartition(" ")
        out.append(head)
    return out


def skorch_lines(data, **kwargs):
    skorch = pytest.importorskip("skorch")
    from skorch.callbacks import PrintLog as SkorchPrintLog

    lines = []
    fit(make_net(skorch.NeuralNetClassifier, callbacks__print_log=SkorchPrintLog(sink=lines.append),
                 **kwargs), data)
    return lines


def test_table_matches_skorch(data):
    theirs = skorch_lines(data, max_epochs=5)
    _, ours = fit_with_sink(data, max_epochs=5)
    assert len(ours) == len(theirs) == 7
    assert without_dur(ours) == without_dur(theirs)
    assert ours[0] == HEADER


def test_table_with_events_matches_skorch(data):
    skorch = pytest.importorskip("skorch")
    from skorch.callbacks import Callback as SkorchCallback
    from skorch.callbacks import PrintLog as SkorchPrintLog

    class SkorchRecordEvent(SkorchCallback):
        on_epoch_end = RecordEvent.on_epoch_end

    theirs = []
    fit(make_net(skorch.NeuralNetClassifier, max_epochs=3, callbacks__print_log=None,
                 callbacks=[SkorchRecordEvent(), SkorchPrintLog(sink=theirs.append, keys_ignored="valid_acc")]),
        data)
    ours = []
    fit(make_net(max_epochs=3, callbacks__print_log=None,
                 callbacks=[RecordEvent(), PrintLog(sink=ours.append, keys_ignored="valid_acc")]), data)
    assert without_dur(ours) == without_dur(theirs)
    assert ours[0] == "  epoch    train_loss    valid_loss    cp     dur"


def test_table_with_user_callbacks_matches_skorch(data):
    pytest.importorskip("skorch")
    from skorch import callbacks as sc

    theirs = skorch_lines(data, max_epochs=3, callbacks=[
        sc.EpochScoring("f1", lower_is_better=False), sc.LRScheduler("StepLR", step_size=1, gamma=0.5)])
    _, ours = fit_with_sink(data, max_epochs=3, callbacks=[
        EpochScoring("f1", lower_is_better=False), LRScheduler("StepLR", step_size=1, gamma=0.5)])
    assert without_dur(ours) == without_dur(theirs)


def test_highlight_colours_follow_ansi_order(data, color_terminal):
    """Improved metrics take utils.Ansi's colours column by column, from CYAN on (skorch's order)."""
    from prefect_torch.utils import Ansi

    color_terminal = color_terminal()
    net = fit(make_net(max_epochs=1), data)
    first_row = color_terminal.readouterr().out.splitlines()[2]
    for key, colour in zip(("train_loss", "valid_acc", "valid_loss"), (Ansi.CYAN, Ansi.GREEN, Ansi.MAGENTA)):
        value = f"{net.history[0, key]:.4f}"
        assert f"{colour.value}{value}{Ansi.ENDC.value}" in first_row, (key, first_row)
