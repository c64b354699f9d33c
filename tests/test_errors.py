"""Error messages: each one names the problem and the fix."""
import re

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from helpers import PairDataset
from prefect_torch import (
    NeuralNet,
    NeuralNetClassifier,
    NeuralNetRegressor,
    NotInitializedError,
    ValidSplit,
)
from prefect_torch.examples import MyModule


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 2)

    def forward(self, a, b):
        return torch.softmax(self.lin(torch.cat([a, b], dim=1)), dim=-1)


def make_net(cls=NeuralNetClassifier, module=MyModule, **kwargs):
    kwargs.setdefault("max_epochs", 1)
    kwargs.setdefault("verbose", 0)
    return cls(module, **kwargs)


# -- data that does not fit -----------------------------------------------------------------------
def test_x_and_y_of_different_lengths(data):
    X, y = data
    with pytest.raises(ValueError, match=r"different lengths.*len\(X\)=200.*len\(y\)=190"):
        make_net().fit(X, y[:190])
    with pytest.raises(ValueError, match=r"len\(X\)=150.*len\(y\)=200"):
        make_net(NeuralNetRegressor, module=nn.Linear(10, 1)).fit(X[:150], y.reshape(-1, 1).astype(np.float32))


def test_dict_inputs_of_different_lengths(data):
    X, y = data
    with pytest.raises(ValueError, match=r"different lengths.*'a': 200.*'b': 100"):
        make_net(module=TwoInputs).fit({"a": X[:, :6], "b": X[:100, 6:]}, y)


@pytest.mark.parametrize("criterion, module", [(nn.NLLLoss, MyModule),
                                               (nn.CrossEntropyLoss, nn.Linear(10, 2))])
def test_float_class_targets(data, criterion, module):
    X, y = data
    with pytest.raises(TypeError, match=rf"dtype float32.*{criterion.__name__}.*astype\(np\.int64\)"):
        make_net(module=module, criterion=criterion).fit(X, y.astype(np.float32))


def test_float_class_targets_in_a_plain_neuralnet(data):
    X, y = data
    with pytest.raises(TypeError, match=r"NLLLoss expects class indices of dtype torch\.int64.*astype\(np\.int64\)"):
        make_net(NeuralNet, criterion=nn.NLLLoss).fit(X, y.astype(np.float32))


def test_non_integral_float_targets_without_validation_split(data):
    X, y = data
    with pytest.raises(TypeError, match=r"int64"):
        make_net(train_split=None).fit(X, y.astype(np.float32) + 0.5)


def test_non_integral_float_targets_with_default_split(data):
    X, y = data
    with pytest.raises(TypeError, match=r"int64"):
        make_net().fit(X, y.astype(np.float32) + 0.5)


@pytest.mark.parametrize("convert", [lambda X: X.astype(np.float64),
                                     lambda X: torch.as_tensor(X, dtype=torch.float64)])
def test_float64_inputs_into_a_float32_module(data, convert):
    X, y = data
    with pytest.raises(TypeError, match=r"float64.*float32.*X\.astype\(np\.float32\)"):
        make_net().fit(convert(X), y)


def test_float64_dict_inputs(data):
    X, y = data
    X = X.astype(np.float64)
    with pytest.raises(TypeError, match=r"float64.*float32.*astype\(np\.float32\)"):
        make_net(module=TwoInputs).fit({"a": X[:, :6], "b": X[:, 6:]}, y)


def test_float64_inputs_at_predict_time(data):
    X, y = data
    net = make_net().fit(X, y)
    with pytest.raises(TypeError, match=r"float64.*float32.*astype"):
        net.predict(X.astype(np.float64))


def test_object_array_inputs(data):
    X, y = data
    with pytest.raises(TypeError, match=r"dtype object.*astype\(np\.float32\)"):
        make_net().fit(X.astype(object), y)


@pytest.mark.parametrize("criterion, module", [
    (nn.NLLLoss, lambda: nn.Sequential(nn.Linear(10, 1), nn.Softmax(dim=-1))),
    (nn.CrossEntropyLoss, lambda: nn.Linear(10, 1)),
])
def test_classifier_module_with_too_few_outputs(data, criterion, module):
    X, y = data
    with pytest.raises(ValueError, match=rf"{criterion.__name__}: y holds class index 1 but the module "
                                         r"outputs 1 columns.*one output per class \(at least 2\)"):
        make_net(module=module(), criterion=criterion).fit(X, y)


def test_class_index_beyond_the_module_outputs(data):
    X, _ = data
    y3 = (np.arange(len(X)) % 3).astype(np.int64)
    with pytest.raises(ValueError, match=r"class index 2 but the module outputs 2 columns.*at least 3"):
        make_net().fit(X, y3)


def test_regressor_output_shape_mismatch(data):
    X, _ = data
    y = X[:, :1].copy()
    with pytest.raises(ValueError, match=r"MSELoss.*shape \(\d+, 2\).*shape \(\d+, 1\).*one column per target"):
        make_net(NeuralNetRegressor, module=nn.Linear(10, 2)).fit(X, y)


def test_neuralnet_mse_with_1d_targets(data):
    X, _ = data
    with pytest.raises(ValueError, match=r"MSELoss.*\(\d+, 1\).*\(\d+,\).*y\.reshape\(-1, 1\)"):
        make_net(NeuralNet, module=nn.Linear(10, 1), criterion=nn.MSELoss).fit(X, X[:, 0].copy())


def test_regressor_with_1d_targets_and_2d_output(data):
    # 1-d y is accepted (BaggingRegressor passes it), but never broadcast against (n, 1) outputs
    X, _ = data
    with pytest.raises(ValueError, match=r"MSELoss.*\(\d+, 1\).*\(\d+,\).*y\.reshape\(-1, 1\)"):
        make_net(NeuralNetRegressor, module=nn.Linear(10, 1)).fit(X, X[:, 0].copy())


@pytest.mark.parametrize("labels", [np.array(["a", "b"]), np.array(["a", "b"], dtype=object)])
def test_string_labels_for_the_classifier(data, labels):
    X, y = data
    with pytest.raises(TypeError, match=r"y holds labels such as .*'[ab]'.*class indices.*LabelEncoder"):
        make_net().fit(X, labels[y])


def test_classifier_needs_targets(data):
    X, _ = data
    with pytest.raises(ValueError, match=r"needs targets.*fit\(X, y\)"):
        make_net().fit(X)
    with pytest.raises(ValueError, match=r"NeuralNetRegressor needs targets"):
        make_net(NeuralNetRegressor, module=nn.Linear(10, 1)).fit(X)


class OpaqueDataset(PairDataset):
    """A Dataset whose targets cannot be read without iterating it (no ``y`` attribute)."""

    def __init__(self, X, y):
        self.X, self.targets = X, y

    def __getitem__(self, i):
        return torch.as_tensor(self.X[i]), torch.as_tensor(self.targets[i])


def test_stratified_split_of_a_torch_dataset_without_targets(data):
    X, y = data
    with pytest.raises(ValueError, match=r"stratified.*needs targets.*ValidSplit\(5, stratified=False\)"):
        make_net().fit(OpaqueDataset(X, y))


def test_stratified_split_reads_the_y_attribute_of_a_torch_dataset(data):
    X, y = data
    net = make_net().fit(PairDataset(X, y))
    assert list(net.classes_) == [0, 1]
    assert sum(net.history[-1, "batches", :, "valid_batch_size"]) == len(X) // 5


# -- using a net before fit -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["predict", "predict_proba", "forward", "score"])
def test_using_an_unfitted_net(data, method):
    X, y = data
    net = make_net()
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(NotInitializedError, match=r"not initialized yet. Call 'initialize' or 'fit'"):
        getattr(net, method)(*args)
    with pytest.raises(NotFittedError):
        getattr(net, method)(*args)
    assert issubclass(NotInitializedError, NotFittedError)


def test_classes_before_fit():
    net = make_net()
    with pytest.raises(AttributeError, match=r"no classes_.*classes=\["):
        net.classes_
    assert not hasattr(net, "classes_")


# -- parameters -----------------------------------------------------------------------------------
def test_unknown_constructor_kwarg_with_single_underscore():
    # checked by initialize() (and so fit), as scikit-learn and skorch do, not by __init__
    net = make_net(module_num_units=20)
    with pytest.raises(ValueError, match=re.escape("unexpected argument 'module_num_units'; did you mean "
                                                   "'module__num_units'?")):
        net.initialize()
    assert not getattr(net, "initialized_", False)
    with pytest.raises(ValueError, match=re.escape("did you mean 'optimizer__momentum'?")):
        make_net(optimizer_momentum=0.9).fit(np.zeros((10, 20), np.float32), np.zeros(10, np.int64))


def test_unknown_constructor_kwarg_close_to_a_parameter():
    with pytest.raises(ValueError, match=re.escape("unexpected argument 'max_epoch'; did you mean 'max_epochs'?")):
        make_net(max_epoch=3).initialize()


def test_unknown_constructor_kwargs_are_listed_together_and_survive_clone():
    net = make_net(zzz=1, iterator_train_shuffle=True, lr=0.5)
    copy = clone(net)
    assert copy.get_params()["zzz"] == 1 and copy.lr == 0.5
    for candidate in (net, copy):
        with pytest.raises(ValueError) as error:
            candidate.initialize()
        first, second = str(error.value).splitlines()
        assert "'iterator_train_shuffle'; did you mean 'iterator_train__shuffle'?" in first
        assert re.search(r"unexpected argument 'zzz'.*module__<name>.*optimizer__<name>", second)


@pytest.mark.parametrize("initialized", [False, True])
def test_set_params_typo(initialized):
    net = make_net()
    if initialized:
        net.initialize()
    with pytest.raises(ValueError, match=re.escape("invalid parameter 'lrr' for NeuralNetClassifier; "
                                                   "did you mean 'lr'?")):
        net.set_params(lrr=0.1)
    assert not hasattr(net, "lrr")


def test_module_kwarg_the_module_does_not_accept():
    with pytest.raises(TypeError, match=r"module__foo: MyModule\(\) has no argument 'foo' "
                                        r"\(it accepts: num_units, n_features\)"):
        make_net(module__foo=1).initialize()
    with pytest.raises(TypeError, match=r"module__num_unit.*did you mean 'num_units'\?"):
        make_net(module__num_unit=1).initialize()


def test_optimizer_and_criterion_kwargs_that_are_not_accepted():
    with pytest.raises(TypeError, match=r"optimizer__momentun: SGD\(\).*did you mean 'momentum'\?"):
        make_net(optimizer__momentun=0.9).initialize()
    with pytest.raises(TypeError, match=r"criterion__wieght: NLLLoss\(\).*did you mean 'weight'\?"):
        make_net(criterion__wieght=torch.ones(2)).initialize()


def test_set_params_module_kwarg_not_accepted_on_an_initialized_net():
    net = make_net().initialize()
    with pytest.raises(TypeError, match=r"module__foo.*it accepts: num_units, n_features"):
        net.set_params(module__foo=1)


def test_unknown_callback_name():
    with pytest.raises(ValueError, match=r"callbacks__nonexistent__x: there is no callback named "
                                         r"'nonexistent'.*print_log"):
        make_net(callbacks__nonexistent__x=1).initialize()
    with pytest.raises(ValueError, match=r"no callback named 'print_lg'; did you mean 'print_log'\?"):
        make_net(callbacks__print_lg__keys_ignored=["dur"]).initialize()


def test_unknown_callback_parameter():
    with pytest.raises(ValueError, match=r"PrintLog has no parameter 'keys_ignore'.*did you mean "
                                         r"'keys_ignored'\?"):
        make_net(callbacks__print_log__keys_ignore=["dur"]).initialize()


def test_duplicate_explicit_callback_names():
    from prefect_torch.callbacks import EpochTimer

    with pytest.raises(ValueError, match=r"two callbacks are named 'timer'.*unique names"):
        make_net(callbacks=[("timer", EpochTimer()), ("timer", EpochTimer())]).initialize()


def test_bad_valid_split_arguments():
    with pytest.raises(ValueError, match=r"at least 2 folds"):
        ValidSplit(1)
    with pytest.raises(ValueError, match=r"fraction, in \(0, 1\)"):
        ValidSplit(1.5)
    with pytest.raises(ValueError, match=r"fraction, in \(0, 1\)"):
        ValidSplit(0.0)
    with pytest.raises(TypeError, match=r"int \(folds\), a float \(fraction\) or a splitter"):
        ValidSplit(None)


def test_string_cv_for_valid_split():
    with pytest.raises(TypeError, match=r"int \(folds\), a float \(fraction\) or a splitter"):
        ValidSplit("5")


def test_bad_predict_nonlinearity(data):
    X, y = data
    net = make_net(predict_nonlinearity="softmax", train_split=None).fit(X, y)
    with pytest.raises(TypeError, match=r"predict_nonlinearity must be 'auto', None or a callable"):
        net.predict_proba(X)


def test_cuda_device_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda'.*device='cpu'"):
        make_net(device="cuda").initialize()
