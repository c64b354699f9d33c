"""The code of skorch's "Saving and Loading" guide (the seed of this project), run on prefect_torch.

Only the imports are changed; ``get_features()`` of the guide becomes a ``StandardScaler``.
"""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from torch import nn

from helpers import ANSI, HEADER, REPO, ROW, SEPARATOR, shared_file
from prefect_torch import NeuralNet, NeuralNetClassifier, examples

GUIDE = shared_file("seed/save_load.rst")


# -- the guide's data and module ("Using callbacks") -------------------------------------------
X, y = make_classification(1000, 10, n_informative=5, random_state=0)
X = X.astype(np.float32)
y = y.astype(np.int64)


class MyModule(nn.Sequential):
    def __init__(self, num_units=10):
        super().__init__(
            nn.Linear(10, num_units),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(num_units, 10),
            nn.Linear(10, 2),
            nn.Softmax(dim=-1)
        )


def get_features():
    return StandardScaler()


def test_examples_module_and_data_are_the_guides():
    ex_X, ex_y = examples.make_data()
    np.testing.assert_array_equal(ex_X, X)
    np.testing.assert_array_equal(ex_y, y)
    assert ex_X.dtype == np.float32 and ex_y.dtype == np.int64
    assert repr(examples.MyModule()) == repr(MyModule())
    assert repr(examples.MyModule(num_units=20)) == repr(MyModule(num_units=20))


# -- "General approach": pickling a Pipeline -----------------------------------------------------
def test_guide_pickle_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)

    net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )

    model = Pipeline([
        ('my-features', get_features()),
        ('net', net),
    ])
    model.fit(X, y)

    # saving
    with open('some-file.pkl', 'wb') as f:
        pickle.dump(model, f)

    # loading
    with open('some-file.pkl', 'rb') as f:
        model_loaded = pickle.load(f)

    assert (tmp_path / "some-file.pkl").stat().st_size > 0
    fitted_net = model.named_steps["net"]
    assert len(fitted_net.history) == 10
    # a plain NeuralNet feeds the softmax probabilities to NLLLoss as they are: loss = -p(y)
    assert all(-1 <= loss <= 0 for loss in fitted_net.history[:, "train_loss"])

    expected = model.predict(X)
    assert expected.shape == (1000, 2)  # NeuralNet.predict gives the module's output
    loaded = model_loaded.predict(X)
    np.testing.assert_array_equal(loaded, expected)
    np.testing.assert_allclose(expected.sum(axis=1), 1, rtol=1e-5)
    # the loaded pipeline carries the fitted scaler, net, history and weights
    loaded_net = model_loaded.named_steps["net"]
    assert loaded_net.history == fitted_net.history
    for (k1, v1), (k2, v2) in zip(fitted_net.module_.state_dict().items(),
                                  loaded_net.module_.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    np.testing.assert_array_equal(model_loaded.named_steps["my-features"].mean_,
                                  model.named_steps["my-features"].mean_)
    # and it can go on training
    loaded_net.partial_fit(model_loaded.named_steps["my-features"].transform(X), y, epochs=1)
    assert len(loaded_net.history) == 11


def test_guide_pickle_pipeline_function_transformer(tmp_path):
    torch.manual_seed(0)
    net = NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, max_epochs=2, verbose=0)
    model = Pipeline([("my-features", FunctionTransformer(np.tanh)), ("net", net)])
    model.fit(X, y)
    path = tmp_path / "some-file.pkl"
    with open(path, "wb") as f:
        pickle.dump(model, f)
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


# -- "Using callbacks": the epoch table ----------------------------------------------------------
def guide_tables():
    """The tables printed in the guide, as lists of lines."""
    if not GUIDE.exists():
        pytest.skip(f"{GUIDE} is not available")
    tables, current = [], None
    for line in GUIDE.read_text().splitlines():
        stripped = line[4:] if line.startswith("    ") else line
        if stripped.lstrip().startswith("epoch") and "train_loss" in stripped:
            current = [stripped]
            tables.append(current)
        elif current is not None and stripped.strip() and (
                stripped.lstrip().startswith("-") or stripped.strip()[0].isdigit()):
            current.append(stripped)
        else:
            current = None
    return tables


def drop_column(lines, name):
    """Remove column ``name`` (found in the header) from every line of a table."""
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    headers = [lines[0][s:e].strip() for s, e in spans]
    index = headers.index(name)
    start = spans[index - 1][1]
    end = spans[index][1]
    return [line[:start] + line[end:] for line in lines]


def test_guide_table_shape():
    tables = guide_tables()
    assert len(tables) == 4
    first = tables[0]
    assert len(first) == 12
    # the guide's table without the Checkpoint's cp column is the table we print
    without_cp = drop_column(first, "cp")
    assert without_cp[0] == HEADER
    assert without_cp[1] == SEPARATOR
    assert all(ROW.match(line) for line in without_cp[2:])


def test_guide_classifier_prints_table(capsys):
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MyModule, lr=0.5,
    )

    _ = net.fit(X, y)

    out = [ANSI.sub("", line) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == HEADER
    assert out[1] == SEPARATOR
    rows = out[2:]
    assert len(rows) == 10
    assert [int(ROW.match(line).group(1)) for line in rows] == list(range(1, 11))
    for line in rows:
        assert len(line) == len(SEPARATOR)
    # the row values are the history's, rounded to 4 decimals
    for line, row in zip(rows, net.history):
        match = ROW.match(line)
        assert match.group(2) == f"{row['train_loss']:.4f}"
        assert match.group(3) == f"{row['valid_acc']:.4f}"
        assert match.group(4) == f"{row['valid_loss']:.4f}"
    # it learns the problem, as in the guide (valid_acc ~0.9 after 10 epochs)
    assert net.history[-1, "valid_acc"] > 0.8
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]

    if GUIDE.exists():
        guide = drop_column(guide_tables()[0], "cp")
        assert [line.split()[0] for line in guide[2:]] == [line.split()[0] for line in rows]
        assert [len(line) for line in guide] == [len(line) for line in out]


def test_guide_classifier_matches_skorch():
    skorch = pytest.importorskip("skorch")
    from skorch.callbacks import PrintLog as SkorchPrintLog

    ours, theirs = [], []
    torch.manual_seed(0)
    ours_net = NeuralNetClassifier(MyModule, lr=0.5, callbacks__print_log__sink=ours.append).fit(X, y)
    torch.manual_seed(0)
    skorch.NeuralNetClassifier(
        MyModule, lr=0.5, callbacks__print_log=SkorchPrintLog(sink=theirs.append)).fit(X, y)

    def no_dur(lines):
        return [ANSI.sub("", line).rsplit(" ", 1)[0] for line in lines]

    assert no_dur(ours) == no_dur(theirs)
    assert len(ours_net.history) == 10


# -- flows/train_example.py ---------------------------------------------------------------------
def test_train_example_script_checkpoints_and_resumes(tmp_path):
    """The main job prints the table with its cp column; a re-run with more epochs resumes."""
    script = REPO / "flows" / "train_example.py"
    if not script.exists():
        pytest.skip("flows/train_example.py is not in this checkout")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    header = HEADER.replace("valid_loss     dur", "valid_loss    cp     dur")
    row = re.compile(ROW.pattern.replace(r" {2,}(\d+\.\d{4})$", r" {2,}\+ {2,}(\d+\.\d{4})$"))

    def run(*args):
        result = subprocess.run([sys.executable, str(script), "--dirname", str(tmp_path / "cp"), *args],
                                capture_output=True, text=True, timeout=240, cwd=str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = [ANSI.sub("", line) for line in result.stdout.splitlines()]
        assert lines.count(header) == 1, result.stdout
        assert lines[lines.index(header) + 1] == SEPARATOR[:-8] + "  ----  ------"
        return [int(row.match(line).group(1)) for line in lines if row.match(line)], result.stdout + result.stderr

    epochs, out = run()
    assert epochs == list(range(1, 11))
    assert "Task run 'epoch-" not in out  # the table stands alone on the console, with no setting
    epochs, out = run("--max-epochs", "12")
    assert epochs == [11, 12]
    assert "resumed after epoch 10" in out
    again = subprocess.run([sys.executable, str(script), "--dirname", str(tmp_path / "cp"), "--max-epochs", "12"],
                           capture_output=True, text=True, timeout=240, cwd=str(tmp_path), env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    said = [line for line in (again.stdout + again.stderr).splitlines() if "nothing to train" in line]
    assert len(said) == 1 and said[0].endswith(" - experiment 'example' is already at epoch 12 of max_epochs=12: "
                                               "nothing to train; run it with --max-epochs 17 to train 5 more")
