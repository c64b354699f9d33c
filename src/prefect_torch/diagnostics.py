"""Turn torch's low-level errors about data that does not fit the module or criterion into help.

These run only after torch has raised (or, for element-wise losses, as a cheap shape check),
so they cost nothing on the training path.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

_CLASS_INDEX_LOSSES = (nn.NLLLoss, nn.CrossEntropyLoss)
_ELEMENTWISE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss,
                       nn.BCEWithLogitsLoss)


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def check_elementwise_shapes(criterion: nn.Module, y_pred: Any, y_true: Any) -> None:
    """Element-wise losses broadcast silently on a shape mismatch; refuse that instead."""
    if (
        isinstance(criterion, _ELEMENTWISE_LOSSES)
        and isinstance(y_pred, torch.Tensor)
        and isinstance(y_true, torch.Tensor)
        and y_pred.shape != y_true.shape
    ):
        fix = (
            "reshape y to 2 dimensions, e.g. y.reshape(-1, 1)"
            if y_true.dim() == 1 and y_pred.dim() == 2 and y_pred.shape[1] == 1
            else "make the module's last layer output one column per target"
        )
        raise ValueError(
            f"{type(criterion).__name__}: the module's output has shape {_shape(y_pred)} but the "
            f"targets y have shape {_shape(y_true)}; they must match: {fix}"
        )


def explain_loss_error(criterion: nn.Module, y_pred: Any, y_true: Any, error: Exception) -> Exception:
    """A clearer exception for ``criterion(y_pred, y_true)`` having raised ``error``."""
    name = type(criterion).__name__
    if y_true is None:
        return ValueError(f"{name} needs targets, but y is None; pass y to fit()")
    if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
        return error
    if isinstance(criterion, _CLASS_INDEX_LOSSES):
        if y_true.is_floating_point() and y_true.shape != y_pred.shape:
            return TypeError(
                f"{name} expects class indices of dtype torch.int64 as targets, but y has dtype "
                f"{y_true.dtype}; convert it, e.g. y = y.astype(np.int64)"
            )
        if y_pred.dim() < 2 or y_pred.dim() != y_true.dim() + 1:
            return ValueError(
                f"{name}: the module's output has shape {_shape(y_pred)} and the targets y "
                f"{_shape(y_true)}; it needs output (batch, n_classes) and y (batch,) of class "
                "indices: end the module with a layer of n_classes outputs"
            )
        if not y_true.is_floating_point() and y_true.numel():
            top = int(y_true.max())
            if top >= y_pred.shape[1] or int(y_true.min()) < 0:
                return ValueError(
                    f"{name}: y holds class index {top} but the module outputs "
                    f"{y_pred.shape[1]} columns; the last layer needs one output per class "
                    f"(at least {top + 1}), and y must be encoded as 0..n_classes-1"
                )
    if y_pred.dtype != y_true.dtype and y_pred.is_floating_point():
        return TypeError(
            f"{name} got output of dtype {y_pred.dtype} and targets of dtype {y_true.dtype}; "
            f"convert y, e.g. y = y.astype(np.float32)"
        )
    return error


def explain_module_error(module: nn.Module, x: Any, error: Exception) -> Exception:
    """A clearer exception when the module's forward pass failed on input ``x``."""
    param = next(module.parameters(), None)
    inputs = x.values() if isinstance(x, dict) else [x]
    for value in inputs:
        if (
            isinstance(value, torch.Tensor)
            and param is not None
            and value.is_floating_point()
            and value.dtype != param.dtype
        ):
            numpy_name = str(param.dtype).replace("torch.", "")
            return TypeError(
                f"X has dtype {value.dtype} but the module's weights are {param.dtype}; "
                f"convert X, e.g. X = X.astype(np.{numpy_name})"
            )
    return error
