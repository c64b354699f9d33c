"""prefect-torch: scikit-learn compatible PyTorch nets with resumable, checkpointed training.

>>> import numpy as np, torch
>>> from prefect_torch import NeuralNetClassifier
>>> module = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(dim=-1))
>>> net = NeuralNetClassifier(module, max_epochs=1, verbose=0)
>>> net.fit(np.random.rand(40, 4).astype(np.float32), np.arange(40) % 2).history[-1, "epoch"]
1
"""
from . import callbacks
from .binary_classifier import NeuralNetBinaryClassifier
from .classifier import NeuralNetClassifier
from .data import Dataset, ValidSplit, predefined_split
from .exceptions import NotInitializedError
from .history import History
from .net import NeuralNet
from .regressor import NeuralNetRegressor

__version__ = "0.1.0"

__all__ = [
    "NeuralNet",
    "NeuralNetClassifier",
    "NeuralNetBinaryClassifier",
    "NeuralNetRegressor",
    "callbacks",
    "History",
    "Dataset",
    "ValidSplit",
    "predefined_split",
    "NotInitializedError",
]
