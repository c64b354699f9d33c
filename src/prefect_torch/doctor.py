"""``SkorchDoctor``: record what happens inside a net while it trains, and plot it.

The doctor fits a net with temporary hooks that record, for every training step, the
activations of every layer, the gradient of every learnable parameter and the relative size
of every parameter's update. The hooks and the doctor's callback are removed after the fit,
so the net is left as it was given (only trained). Plots need matplotlib
(``pip install 'prefect-torch[plot]'``), imported only when a plot is drawn.

Example
-------
>>> import numpy as np, torch
>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.helper import SkorchDoctor
>>> module = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(dim=-1))
>>> net = NeuralNetClassifier(module, max_epochs=2, batch_size=8, train_split=None, verbose=0)
>>> X, y = np.random.rand(16, 4).astype("float32"), np.arange(16) % 2
>>> doctor = SkorchDoctor(net).fit(X, y)
>>> len(doctor.activation_recs_["module"])  # 2 epochs x 2 batches
4
>>> doctor.get_param_names()["module"]
['0.weight', '0.bias']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from .callbacks import Callback
from .exceptions import NotInitializedError

__all__ = ["SkorchDoctor"]

Records = dict[str, list[dict[str, Any]]]
MatchFn = Callable[[str], bool]


def _match_all(name: str) -> bool:
    return True


def _flat_outputs(name: str, output: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """``(key, tensor)`` pairs of a layer's output: tuples as ``name[i]``, dicts as ``name["k"]``."""
    if isinstance(output, torch.Tensor):
        yield name, output
    elif isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            yield from _flat_outputs(f"{name}[{i}]", item)
    elif isinstance(output, dict):
        for key, item in output.items():
            yield from _flat_outputs(f'{name}["{key}"]', item)


def _relative_update(before: torch.Tensor, after: torch.Tensor) -> float:
    """``|after - before|`` relative to the larger of the two norms (0.0 when both are zero)."""
    scale = max(before.norm().item(), after.norm().item())
    return 0.0 if scale == 0.0 else (after - before).norm().item() / scale


def _import_pyplot() -> Any:
    try:
        import matplotlib  # noqa: F401  (imported on its own so a missing package is named)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "This feature requires matplotlib to be installed; please install it first, e.g. "
            "using 'python -m pip install matplotlib' (or pip install 'prefect-torch[plot]')"
        ) from exc
    return plt


class _StepRecorder(Callback):
    """Opens a record at each training batch's start and files it at the batch's end."""

    def __init__(self, doctor: "SkorchDoctor"):
        self.doctor = doctor

    def on_batch_begin(self, net: Any, training: bool = False, **kwargs: Any) -> None:
        if training:
            self.doctor._begin_step()

    def on_batch_end(self, net: Any, training: bool = False, **kwargs: Any) -> None:
        if training:
            self.doctor._end_step()


class SkorchDoctor:
    """Fit a net while recording activations, gradients and parameter updates per step.

    Parameters
    ----------
    net : NeuralNet
        The net to diagnose (initialized or not). ``fit`` initializes it when needed and then
        trains it with ``partial_fit``, so an initialized net keeps its callbacks and weights.
    match_fn : callable, optional
        ``match_fn(name) -> bool`` keeps only the layers (``'lin0'``, ``'module0[1]'``) and
        parameters (``'lin0.weight'``) whose name it accepts; by default everything is kept.
        Use a small net and few steps: every record is a copy.

    Attributes
    ----------
    activation_recs_ : dict
        Per module or criterion name (``'module'``, ``'criterion'``, or a subclass's own
        parts), a list with one dict per training step mapping layer names to numpy arrays.
    gradient_recs_ : dict
        Likewise, parameter names to the gradient (numpy array) of that step.
    param_update_recs_ : dict
        Likewise, parameter names to ``|p_after - p_before| / max(|p_before|, |p_after|)``
        (a float) for that step's optimizer update.
    module_names_ : list of str
        The names of the recorded modules and criteria.
    """

    def __init__(self, net: Any, match_fn: MatchFn | None = None):
        self.net = net
        self.match_fn = match_fn

    # -- recording ------------------------------------------------------------------------------
    def _parts(self) -> dict[str, torch.nn.Module]:
        net = self.net
        parts = {}
        for kind in ("module", "criterion"):
            for prefix in net._names_of(kind):
                part = net.__dict__.get(prefix + "_")
                if isinstance(part, torch.nn.Module):
                    parts[prefix] = part
        return parts

    def _learnable(self, part: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        match = self.match_fn or _match_all
        return [(name, p) for name, p in part.named_parameters() if p.requires_grad and match(name)]

    def _begin_step(self) -> None:
        self._recording = True
        self._step_acts: dict[str, dict[str, np.ndarray]] = {name: {} for name in self.module_names_}
        self._step_grads: dict[str, dict[str, np.ndarray]] = {name: {} for name in self.module_names_}
        self._before = {name: {key: p.detach().clone() for key, p in self._learnable(part)}
                        for name, part in self._parts().items()}

    def _end_step(self) -> None:
        self._recording = False
        parts = self._parts()
        for name in self.module_names_:
            learnable = dict(self._learnable(parts[name]))
            grads = self._step_grads[name]
            updates = {key: _relative_update(before, learnable[key].detach())
                       for key, before in self._before[name].items()}
            for recs, step in ((self.activation_recs_, self._step_acts[name]),
                               (self.gradient_recs_, {k: grads[k] for k in learnable if k in grads}),
                               (self.param_update_recs_, updates)):
                if step:
                    recs[name].append(step)
        if not any(recs for all_recs in (self.activation_recs_, self.gradient_recs_,
                                         self.param_update_recs_) for recs in all_recs.values()):
            raise ValueError("No activations, gradients, or updates are being recorded, please "
                             "check the match_fn (it refused every layer and parameter name)")

    def _activation_hook(self, part_name: str, layer_name: str) -> Callable:
        match = self.match_fn or _match_all

        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            if not self._recording:
                return
            for key, tensor in _flat_outputs(layer_name, output):
                if match(key):
                    self._step_acts[part_name][key] = tensor.detach().cpu().numpy().copy()
        return hook

    def _gradient_hook(self, part_name: str, param_name: str) -> Callable:
        def hook(grad: torch.Tensor) -> None:
            if self._recording:
                self._step_grads[part_name][param_name] = grad.detach().cpu().numpy().copy()
        return hook

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> "SkorchDoctor":
        """Train the net on ``X, y`` (``partial_fit``), recording every training step."""
        net = self.net
        if not getattr(net, "initialized_", False):
            net.initialize()
        parts = self._parts()
        self.module_names_ = list(parts)
        self.activation_recs_: Records = {name: [] for name in parts}
        self.gradient_recs_: Records = {name: [] for name in parts}
        self.param_update_recs_: Records = {name: [] for name in parts}
        self._recording = False
        handles = []
        recorder = ("doctor", _StepRecorder(self))
        net.callbacks_.append(recorder)
        try:
            for part_name, part in parts.items():
                for layer_name, layer in part.named_modules():
                    if layer_name:  # the part itself is the whole net: its layers are recorded
                        handles.append(layer.register_forward_hook(
                            self._activation_hook(part_name, layer_name)))
                for param_name, param in self._learnable(part):
                    handles.append(param.register_hook(self._gradient_hook(part_name, param_name)))
            net.partial_fit(X, y, **fit_params)
        finally:
            for handle in handles:
                handle.remove()
            net.callbacks_[:] = [cb for cb in net.callbacks_ if cb is not recorder]
            self._recording = False
            for attr in ("_step_acts", "_step_grads", "_before"):
                self.__dict__.pop(attr, None)
        return self

    # -- the net's predictions ------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        return self.net.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.net.predict_proba(X)

    def score(self, X: Any, y: Any = None, **kwargs: Any) -> float:
        return self.net.score(X, y, **kwargs)

    # -- names ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "activation_recs_"):
            raise NotInitializedError(
                "SkorchDoctor is not initialized yet. Call 'fit(X, y) before using this method.")

    def get_layer_names(self) -> dict[str, list[str]]:
        """The recorded layer names, per module or criterion name."""
        self._check_fitted()
        return {name: list(recs[0]) if recs else [] for name, recs in self.activation_recs_.items()}

    def get_param_names(self) -> dict[str, list[str]]:
        """The recorded (learnable) parameter names, per module or criterion name."""
        self._check_fitted()
        names = {}
        for name, recs in self.gradient_recs_.items():
            seen = recs[0] if recs else {}
            names[name] = [key for key in self._param_order(name) if key in seen]
        return names

    def _param_order(self, part_name: str) -> list[str]:
        part = self._parts().get(part_name)
        return [] if part is None else [key for key, _ in part.named_parameters()]

    # -- plots ----------------------------------------------------------------------------------
    def _figure_axes(self, axes: Any, count: int, figsize: Any) -> tuple[Any, np.ndarray]:
        plt = _import_pyplot()
        if axes is None:
            _, axes = plt.subplots(count, 1, figsize=figsize or (12, 6 * count), squeeze=False)
        return plt, axes

    def plot_loss(self, ax: Any = None, figsize: Any = None, **kwargs: Any) -> Any:
        """Training and validation loss per epoch, on ``ax`` (a new one by default)."""
        self._check_fitted()
        plt = _import_pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=figsize or (12, 6))
        history = self.net.history
        epochs = history[:, "epoch"]
        for key in ("train_loss", "valid_loss"):
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], label=key, **kwargs)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def _histograms(self, recs: Records, step: int, match_fn: MatchFn | None, axes: Any,
                    figsize: Any, title: str, no_match: str, hist_kwargs: dict[str, Any]) -> Any:
        match = match_fn or _match_all
        selected = {}
        for part_name, part_recs in recs.items():
            if part_recs:
                values = {k: v for k, v in part_recs[step].items() if match(k)}
                if values:
                    selected[part_name] = values
        if not selected:
            raise ValueError(no_match)
        _, axes = self._figure_axes(axes, len(selected), figsize)
        for ax, (part_name, values) in zip(np.asarray(axes).flat, selected.items()):
            for key, value in values.items():
                ax.hist(np.ravel(value), label=key, **hist_kwargs)
            ax.set_title(f"{title} of {part_name} (step {step})")
            ax.legend()
        return axes

    def plot_activations(self, step: int = -1, match_fn: MatchFn | None = None, axes: Any = None,
                         histtype: str = "step", lw: float = 2, bins: Any = None,
                         density: bool = True, figsize: Any = None, **kwargs: Any) -> Any:
        """Histograms of the activations at training ``step``, one plot per module/criterion."""
        self._check_fitted()
        return self._histograms(
            self.activation_recs_, step, match_fn, axes, figsize, "activations",
            "No layer found matching the specification of match_fn. "
            "Use doctor.get_layer_names() to check all layers.",
            dict(histtype=histtype, lw=lw, bins=30 if bins is None else bins, density=density,
                 **kwargs))

    def plot_gradients(self, step: int = -1, match_fn: MatchFn | None = None, axes: Any = None,
                       histtype: str = "step", lw: float = 2, bins: Any = None,
                       density: bool = True, figsize: Any = None, **kwargs: Any) -> Any:
        """Histograms of the gradients at training ``step``, one plot per module/criterion."""
        self._check_fitted()
        return self._histograms(
            self.gradient_recs_, step, match_fn, axes, figsize, "gradients",
            "No parameter found matching the specification of match_fn. "
            "Use doctor.get_param_names() to check all parameters.",
            dict(histtype=histtype, lw=lw, bins=30 if bins is None else bins, density=density,
                 **kwargs))

    def plot_param_updates(self, match_fn: MatchFn | None = None, axes: Any = None,
                           figsize: Any = None, **kwargs: Any) -> Any:
        """log10 of each parameter's relative update per step, one plot per module/criterion."""
        self._check_fitted()
        match = match_fn or _match_all
        selected = {name: [k for k in recs[0] if match(k)]
                    for name, recs in self.param_update_recs_.items() if recs}
        selected = {name: keys for name, keys in selected.items() if keys}
        if not selected:
            raise ValueError("No parameter found matching the specification of match_fn. "
                             "Use doctor.get_param_names() to check all parameters.")
        _, axes = self._figure_axes(axes, len(selected), figsize)
        for ax, (part_name, keys) in zip(np.asarray(axes).flat, selected.items()):
            recs = self.param_update_recs_[part_name]
            for key in keys:
                values = np.array([rec[key] for rec in recs], dtype=float)
                with np.errstate(divide="ignore"):
                    ax.plot(np.log10(values), label=key, **kwargs)
            ax.set_xlabel("step")
            ax.set_ylabel("log10 relative update")
            ax.set_title(f"parameter updates of {part_name}")
            ax.legend()
        return axes

    def _find(self, recs: Records, key: str, missing: str) -> list[np.ndarray]:
        for part_recs in recs.values():
            if part_recs and key in part_recs[0]:
                return [np.ravel(rec[key]) for rec in part_recs if key in rec]
        raise ValueError(missing)

    def _over_time(self, values: list[np.ndarray], ax: Any, lw: float, bins: Any, color: Any,
                   figsize: Any, interpolate: bool, title: str, **kwargs: Any) -> Any:
        """One histogram per step, stacked upwards (the latest step on top)."""
        plt = _import_pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=figsize or (12, 6))
        if bins is None:
            low = min(float(v.min()) for v in values)
            high = max(float(v.max()) for v in values)
            bins = np.linspace(low, high if high > low else low + 1.0, 31)
        counts = [np.histogram(v, bins=bins)[0].astype(float) for v in values]
        peak = max(float(c.max()) for c in counts) or 1.0
        edges = np.asarray(bins, dtype=float)
        centers = (edges[:-1] + edges[1:]) / 2
        for offset, count in enumerate(counts):
            height = offset + 0.9 * count / peak
            if interpolate:
                ax.plot(centers, height, lw=lw, color=color, **kwargs)
            else:
                ax.step(centers, height, where="mid", lw=lw, color=color, **kwargs)
        ax.set_xlabel("value")
        ax.set_ylabel("step")
        ax.set_title(title)
        return ax

    def plot_activations_over_time(self, layer_name: str, ax: Any = None, lw: float = 1,
                                   bins: Any = None, color: Any = "k", figsize: Any = None,
                                   interpolate: bool = False, **kwargs: Any) -> Any:
        """The distribution of one layer's activations at every training step."""
        self._check_fitted()
        values = self._find(self.activation_recs_, layer_name,
                            f"No layer named '{layer_name}' could be found. "
                            "Use doctor.get_layer_names() to check all layers.")
        return self._over_time(values, ax, lw, bins, color, figsize, interpolate,
                               f"activations of {layer_name} over time", **kwargs)

    def plot_gradient_over_time(self, param_name: str, ax: Any = None, lw: float = 1,
                                bins: Any = None, color: Any = "k", figsize: Any = None,
                                interpolate: bool = False, **kwargs: Any) -> Any:
        """The distribution of one parameter's gradient at every training step."""
        self._check_fitted()
        values = self._find(self.gradient_recs_, param_name,
                            f"No parameter named '{param_name}' could be found. "
                            "Use doctor.get_param_names() to check all parameters.")
        return self._over_time(values, ax, lw, bins, color, figsize, interpolate,
                               f"gradients of {param_name} over time", **kwargs)

    def plot_param_update_over_time(self, param_name: str, ax: Any = None, figsize: Any = None,
                                    **kwargs: Any) -> Any:
        """log10 of one parameter's relative update at every training step (a line)."""
        self._check_fitted()
        for part_recs in self.param_update_recs_.values():
            if part_recs and param_name in part_recs[0]:
                values = np.array([rec[param_name] for rec in part_recs], dtype=float)
                break
        else:
            raise ValueError(f"No parameter named '{param_name}' could be found. "
                             "Use doctor.get_param_names() to check all parameters.")
        plt = _import_pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=figsize or (12, 6))
        with np.errstate(divide="ignore"):
            ax.plot(np.log10(values), label=param_name, **kwargs)
        ax.set_xlabel("step")
        ax.set_ylabel("log10 relative update")
        ax.set_title(f"updates of {param_name} over time")
        return ax
