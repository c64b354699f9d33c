"""A progress bar per epoch: :class:`ProgressBar` (through ``tqdm``).

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import ProgressBar
>>> from prefect_torch.examples import MyModule
>>> net = NeuralNetClassifier(MyModule, callbacks=[ProgressBar(postfix_keys=["train_loss"])])
"""
from __future__ import annotations

import importlib
import math
from typing import Any

from ..utils import get_len
from .base import Callback

DEFAULT_POSTFIX_KEYS = ("train_loss", "valid_loss")


def _tqdm() -> Any:
    try:
        import tqdm
    except ImportError as error:  # pragma: no cover - tqdm is a dependency
        raise ImportError("ProgressBar draws its bars with tqdm, which is not installed: pip install tqdm") from error
    return tqdm


def in_notebook() -> bool:
    """Are we running in a Jupyter kernel (where tqdm can draw a widget)?"""
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821  (defined by IPython)
    except NameError:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


class ProgressBar(Callback):
    """Shows a ``tqdm`` bar over each epoch's batches (training and validation), with the latest
    batch values of ``postfix_keys``; the bar disappears when the epoch ends.

    Parameters
    ----------
    batches_per_epoch : 'auto', 'count', int or None
        The bar's total. ``'auto'``: computed from the lengths of the training and
        validation data and the batch sizes; ``'count'``: the number of batches of the
        previous epoch (no total in the first); a number: that number; ``None``: no total.
    detect_notebook : bool
        Draw a notebook widget (``tqdm.notebook``, needs ``ipywidgets``) when running in
        Jupyter, else a text bar.
    postfix_keys : list of str or None
        Batch values shown next to the bar (default ``['train_loss', 'valid_loss']``);
        keys missing from the last batch are left out.
    """

    def __init__(self, batches_per_epoch: str | int | None = "auto", detect_notebook: bool = True,
                 postfix_keys: list[str] | None = None):
        self.batches_per_epoch = batches_per_epoch
        self.detect_notebook = detect_notebook
        self.postfix_keys = postfix_keys

    def initialize(self) -> "ProgressBar":
        choice = self.batches_per_epoch
        if not (choice in ("auto", "count") or choice is None
                or (isinstance(choice, int) and not isinstance(choice, bool) and choice >= 0)):
            raise ValueError(
                f"ProgressBar(batches_per_epoch={choice!r}): pass 'auto', 'count', a number of batches, or None"
            )
        keys = self.postfix_keys
        self.postfix_keys_ = list(DEFAULT_POSTFIX_KEYS if keys is None else [keys] if isinstance(keys, str) else keys)
        return self

    @staticmethod
    def _batches(net: Any, dataset: Any, training: bool) -> int:
        """How many batches ``dataset`` makes with the net's batch size (and ``drop_last``)."""
        if dataset is None:
            return 0
        params = net.get_params()
        prefix = "iterator_train" if training else "iterator_valid"
        size = params.get(f"{prefix}__batch_size", params["batch_size"])
        n = get_len(dataset)
        if n == 0 or size is None:  # batch_size=None: one sample at a time
            return n
        if size == -1:  # the whole dataset in one batch
            return 1
        drop_last = params.get(f"{prefix}__drop_last", False)
        return n // size if drop_last else math.ceil(n / size)

    def total(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None) -> int | None:
        """The bar's total for the epoch that begins."""
        choice = self.batches_per_epoch
        if choice == "auto":
            return self._batches(net, dataset_train, True) + self._batches(net, dataset_valid, False)
        if choice == "count":
            return len(net.history[-2]["batches"]) if len(net.history) > 1 else None
        return choice  # type: ignore[return-value]

    def postfix(self, net: Any) -> dict[str, Any]:
        """The last batch's values of ``postfix_keys`` that it has."""
        batch = net.history[-1]["batches"][-1] if net.history[-1]["batches"] else {}
        return {key: batch[key] for key in self.postfix_keys_ if key in batch}

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None,
                       **kwargs: Any) -> None:
        tqdm = _tqdm()
        total = self.total(net, dataset_train, dataset_valid)
        if self.detect_notebook and in_notebook():
            notebook = importlib.import_module("tqdm.notebook")
            self.pbar_ = notebook.tqdm(total=total, leave=False)
        else:
            self.pbar_ = tqdm.tqdm(total=total, leave=False)

    def on_batch_end(self, net: Any, **kwargs: Any) -> None:
        self.pbar_.set_postfix(self.postfix(net), refresh=False)
        self.pbar_.update()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.pbar_.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("pbar_", None)  # a live bar holds a stream; a new one is made every epoch
        return state
