"""helper.parse_args: a script's defaults and command-line kwargs set on a net or a pipeline."""
import math

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MinMaxScaler
from torch import nn

from prefect_torch import NeuralNetClassifier
from prefect_torch.cli_args import _resolve_dotted_name, _substitute_default, print_help
from prefect_torch.helper import parse_args
from prefect_torch.toy import MLPModule


def make_pipe():
    net = NeuralNetClassifier(MLPModule, module__hidden_units=10)
    return Pipeline([("features", FeatureUnion([("scale", MinMaxScaler())])), ("net", net)])


def test_round_trip_on_a_pipeline_kwargs_over_defaults():
    defaults = {"net__batch_size": 256, "net__module__hidden_units": 55, "net__lr": 0.5}
    kwargs = {"net__batch_size": 123, "net__module__nonlin": "torch.nn.RReLU(0.125, upper=0.5)",
              "features__scale__feature_range": (-1, 1)}
    pipe = parse_args(kwargs, defaults)(make_pipe())
    net = pipe.named_steps["net"]
    assert (net.batch_size, net.module__hidden_units, net.lr) == (123, 55, 0.5)
    assert isinstance(net.module__nonlin, nn.RReLU)
    assert (net.module__nonlin.lower, net.module__nonlin.upper) == (0.125, 0.5)
    assert pipe.named_steps["features"].transformer_list[0][1].feature_range == (-1, 1)
    net.initialize()
    assert net.module_.sequential[0].out_features == 55  # the parsed settings reach the module


def test_dotted_names_resolve_and_other_strings_stay():
    assert _resolve_dotted_name("math.cos") is math.cos
    assert _resolve_dotted_name("torch.nn.ReLU") is nn.ReLU
    assert _resolve_dotted_name("adam") == "adam"
    assert _resolve_dotted_name("no.such.module") == "no.such.module"
    assert _resolve_dotted_name(0.5) == 0.5
    # call arguments are literals only: code is never run
    sneaky = 'torch.nn.RReLU(__import__("os").getpid())'
    assert _resolve_dotted_name(sneaky) == sneaky


def test_help_prints_the_settable_parameters_and_exits(capsys):
    parsed = parse_args({"help": True}, defaults={"batch_size": 64, "module__hidden_units": 7})
    net = NeuralNetClassifier(MLPModule)
    with pytest.raises(SystemExit):
        parsed(net)
    out = capsys.readouterr().out
    assert "-- --help" in out
    assert "<NeuralNetClassifier> options:" in out and "<MLPModule> options:" in out
    assert "--batch_size : int (default=64)" in out
    assert "--module__hidden_units : int (default=7)" in out
    assert "--module : torch module (class or instance)" in out
    assert net.batch_size == 128  # help changes nothing


def test_help_for_plain_sklearn_estimators_lists_each_once(capsys):
    print_help(Pipeline([("clf", LogisticRegression())]))
    out = capsys.readouterr().out
    assert out.count("--clf__C : float (default=1.0)") == 1


@pytest.mark.parametrize("text, new, expected", [
    ("int (default=128)", 256, "int (default=256)"),
    ("int (default = 128)", None, "int (default = 128)"),
    ("tuple (min, max), default=(0, 1)", (-1, 1), "tuple (min, max), default=(-1, 1)"),
    ("bool, default True", False, "bool, default False"),
    ("'l1' or 'l2' ('l2' by default)", "l1", "'l1' or 'l2' ('l1' by default)"),
    ("nonlin (ReLU() by default)", nn.Tanh(), "nonlin (Tanh() by default)"),
    ("no stated default", 3, "no stated default"),
])
def test_substitute_default(text, new, expected):
    assert _substitute_default(text, new) == expected
