"""Learning-rate scheduling: :class:`LRScheduler` drives any ``torch.optim.lr_scheduler``.

>>> from torch.optim.lr_scheduler import StepLR
>>> from prefect_torch.callbacks import LRScheduler
>>> schedule = LRScheduler(StepLR, step_size=5, gamma=0.5)     # per epoch
>>> cyclic = LRScheduler("OneCycleLR", max_lr=0.1, total_steps=100, step_every="batch")
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler as torch_schedulers

from .base import Callback


class WarmRestartLR(torch_schedulers.LRScheduler):
    """Cosine annealing from ``max_lr`` to ``min_lr`` over periods that grow by ``period_mult``.

    A period of ``p`` epochs runs from ``max_lr`` (its first epoch) down to ``min_lr`` (epoch
    ``p``), then the next period restarts at ``max_lr``. ``min_lr`` and ``max_lr`` are numbers,
    or one number per param group of the optimizer.

    >>> opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    >>> sched = WarmRestartLR(opt, min_lr=0.0, max_lr=1.0, base_period=2, period_mult=2)
    >>> lrs = [opt.param_groups[0]["lr"]] + [(sched.step(), opt.param_groups[0]["lr"])[1] for _ in range(3)]
    >>> [round(lr, 2) for lr in lrs]
    [1.0, 0.5, 0.0, 1.0]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, min_lr: Any = 1e-6, max_lr: Any = 0.05,
                 base_period: int = 10, period_mult: int = 2, last_epoch: int = -1):
        groups = len(optimizer.param_groups)
        self.min_lr, self.max_lr = _per_group("min_lr", min_lr, groups), _per_group("max_lr", max_lr, groups)
        self.base_period, self.period_mult = base_period, period_mult
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        epoch, period = max(self.last_epoch, 0), self.base_period
        while epoch > period:  # a period of p epochs spans p + 1 values: max_lr ... min_lr
            epoch -= period + 1
            period *= self.period_mult
        shape = 0.5 * (1 + math.cos(math.pi * epoch / period))
        return [low + (high - low) * shape for low, high in zip(self.min_lr, self.max_lr)]


def _per_group(name: str, value: Any, groups: int) -> list[float]:
    """``value`` for each of ``groups`` param groups: a number for all, or one per group."""
    if np.ndim(value) == 0:
        return [float(value)] * groups
    values = [float(v) for v in np.asarray(value).ravel()]
    if len(values) != groups:
        raise ValueError(f"WarmRestartLR({name}={value!r}): the optimizer has {groups} param group(s), "
                         f"so {name} must be one number or {groups} numbers")
    return values


def _resolve_policy(policy: Any) -> type:
    if not isinstance(policy, str):
        return policy
    if policy == "WarmRestartLR":
        return WarmRestartLR
    try:
        return getattr(torch_schedulers, policy)
    except AttributeError:
        raise ValueError(
            f"LRScheduler(policy={policy!r}): no such scheduler in torch.optim.lr_scheduler; "
            "pass a scheduler class or one of its names, e.g. 'StepLR'"
        ) from None


class LRScheduler(Callback):
    """Steps a learning-rate scheduler each epoch (``step_every='epoch'``) or train batch.

    Extra keyword arguments go to the scheduler. ``ReduceLROnPlateau`` is stepped with the
    history value ``monitor`` (or ``monitor(net)`` when callable). The learning rate in effect
    is recorded under ``event_name`` (shown as the ``lr`` column); ``None`` records nothing.
    """

    def __init__(self, policy: Any = "WarmRestartLR", monitor: Any = "train_loss",
                 event_name: str | None = "event_lr", step_every: str = "epoch", **kwargs: Any):
        self.policy = policy
        self.monitor = monitor
        self.event_name = event_name
        self.step_every = step_every
        self.kwargs = kwargs

    def simulate(self, steps: int, initial_lr: float, step_args: Any = None) -> np.ndarray:
        """The learning rates of ``steps`` steps from ``initial_lr``, without training.

        ``step_args`` are the values given to ``step()`` (ReduceLROnPlateau's metric): one per
        step, or one for all.

        >>> LRScheduler("StepLR", step_size=2, gamma=0.1).simulate(5, 1.0).round(4).tolist()
        [1.0, 1.0, 0.1, 0.1, 0.01]
        """
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=initial_lr)
        scheduler = _resolve_policy(self.policy)(optimizer, **self.kwargs)
        args = np.broadcast_to(np.asarray(step_args, dtype=float), (steps,)) if step_args is not None else None
        lrs = []
        for i in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients: changes nothing, keeps torch's step order
            if args is None:
                scheduler.step()
            else:
                scheduler.step(float(args[i]))
        return np.asarray(lrs)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**super().get_params(deep), **self.kwargs}

    def set_params(self, **params: Any) -> "LRScheduler":
        own = {k: v for k, v in params.items() if k in self._param_names()}
        self.kwargs.update({k: v for k, v in params.items() if k not in own})
        super().set_params(**own)
        return self

    def initialize(self) -> "LRScheduler":
        if self.step_every not in ("epoch", "batch"):
            raise ValueError(f"LRScheduler(step_every={self.step_every!r}): use 'epoch' or 'batch'")
        self.policy_ = _resolve_policy(self.policy)
        self.lr_scheduler_: Any = None
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        # one scheduler per optimizer, kept across partial_fit calls so schedules continue
        if self.lr_scheduler_ is None or self.lr_scheduler_.optimizer is not net.optimizer_:
            self.lr_scheduler_ = self.policy_(net.optimizer_, **self.kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.lr_scheduler_ is None else {"lr_scheduler": self.lr_scheduler_.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.lr_scheduler_ is not None and "lr_scheduler" in state:
            self.lr_scheduler_.load_state_dict(state["lr_scheduler"])
            # a fresh scheduler reset the rates when it was built; put back the ones in effect
            last = getattr(self.lr_scheduler_, "_last_lr", None)
            if last is not None:
                for group, lr in zip(self.lr_scheduler_.optimizer.param_groups, last):
                    group["lr"] = lr

    def _step(self, net: Any, record: Any, history_key: tuple) -> None:
        if self.event_name is not None:
            record(self.event_name, net.optimizer_.param_groups[0]["lr"])
        if isinstance(self.lr_scheduler_, torch_schedulers.ReduceLROnPlateau):
            score = self.monitor(net) if callable(self.monitor) else net.history[history_key + (self.monitor,)]
            self.lr_scheduler_.step(score)
        else:
            self.lr_scheduler_.step()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if self.step_every == "epoch":
            self._step(net, net.history.record, (-1,))

    def on_batch_end(self, net: Any, training: bool | None = None, **kwargs: Any) -> None:
        if training and self.step_every == "batch":
            self._step(net, net.history.record_batch, (-1, "batches", -1))
