"""What a bit-exact resume needs beyond weights and history: random number generators and callback state.

>>> import torch
>>> state = rng_state()
>>> a = torch.rand(2)
>>> set_rng_state(state)
>>> torch.equal(a, torch.rand(2))
True

Everything is tensors or plain Python data, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch

FORMAT = 1


def rng_state() -> dict[str, Any]:
    """The states of torch (CPU and CUDA), numpy's and python's global generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))


def capture(net: Any) -> dict[str, Any]:
    """The train state of ``net`` now: the global RNGs, the data loaders' own generators, each
    callback's ``state_dict()`` and the configured optimizer settings."""
    callbacks = {}
    for name, callback in getattr(net, "callbacks_", []):
        state = callback.state_dict() if hasattr(callback, "state_dict") else None
        if state:
            callbacks[name] = state
    return {"format": FORMAT, "epoch": len(net.history), "rng": rng_state(), "callbacks": callbacks,
            "optimizer_settings": optimizer_settings(net),
            "generators": {prefix: gen.get_state() for prefix, gen in _iterator_generators(net)}}


def _iterator_generators(net: Any) -> list[tuple[str, torch.Generator]]:
    """Generators given to the data loaders (``iterator_train__generator=...``), which shuffle."""
    if not hasattr(net, "get_params_for"):
        return []
    found = []
    for prefix in ("iterator_train", "iterator_valid"):
        generator = net.get_params_for(prefix).get("generator")
        if isinstance(generator, torch.Generator):
            found.append((prefix, generator))
    return found


def optimizer_settings(net: Any) -> dict[str, Any]:
    """The optimizer's hyperparameters as the net is configured (``lr``, ``optimizer__*``),
    not as a schedule may have changed them since.

    >>> from prefect_torch import NeuralNet
    >>> optimizer_settings(NeuralNet(torch.nn.Linear, torch.nn.MSELoss, lr=0.1, optimizer__momentum=0.9))
    {'momentum': 0.9, 'lr': 0.1}
    """
    if not hasattr(net, "get_params_for_optimizer"):
        return {}
    _, kwargs = net.get_params_for_optimizer("optimizer", [])
    plain = (int, float, bool, str, type(None))
    return {k: v for k, v in kwargs.items()
            if isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(x, plain) for x in v))}


def apply_changed_optimizer_settings(net: Any, state: dict[str, Any]) -> dict[str, tuple]:
    """Where the net's configured optimizer settings differ from those of the run that saved
    ``state``, put the new values into the loaded optimizer (the user changed them on purpose,
    e.g. a lower ``lr`` to continue training). Returns ``{name: (old, new)}``; a learning-rate
    schedule restarts from the new values then, so its saved state is dropped from ``state``.
    """
    saved = state.get("optimizer_settings") or {}
    changed = {k: (saved[k], v) for k, v in optimizer_settings(net).items() if k in saved and saved[k] != v}
    if not changed:
        return {}
    for group in net.optimizer_.param_groups:
        for name, (_, new) in changed.items():
            if name in group:
                group[name] = new
            if name == "lr" and "initial_lr" in group:
                group["initial_lr"] = new
    for callback_state in state["callbacks"].values():
        callback_state.pop("lr_scheduler", None)
    return changed


def restore(net: Any, state: dict[str, Any]) -> None:
    """Put ``net``'s RNGs and callbacks back to a :func:`capture` (callbacks matched by name)."""
    if state.get("format") != FORMAT:
        raise ValueError(f"train state of format {state.get('format')!r}; this version reads format {FORMAT}")
    set_rng_state(state["rng"])
    generators = state.get("generators", {})
    for prefix, generator in _iterator_generators(net):
        if prefix in generators:
            generator.set_state(generators[prefix])
    saved = state["callbacks"]
    for name, callback in getattr(net, "callbacks_", []):
        if name in saved and hasattr(callback, "load_state_dict"):
            callback.load_state_dict(saved[name])


def snapshot(net: Any) -> dict[str, Any]:
    """An in-memory copy of all a checkpoint would hold: every torch part's ``state_dict``,
    the history and the train state (for undoing a failed epoch before anything was committed).

    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> net = NeuralNetClassifier(MyModule, max_epochs=1, verbose=0).initialize()
    >>> saved = snapshot(net)
    >>> _ = net.partial_fit(*make_data(100))
    >>> restore_snapshot(net, saved); len(net.history)
    0
    """
    parts = {name: copy.deepcopy(part.state_dict()) for name, part in vars(net).items()
             if name.endswith("_") and isinstance(part, (torch.nn.Module, torch.optim.Optimizer))}
    return {"parts": parts, "history": copy.deepcopy(net.history), "train_state": capture(net)}


def restore_snapshot(net: Any, saved: dict[str, Any]) -> None:
    """Put ``net`` back to a :func:`snapshot` (which stays usable for another restore)."""
    for name, state in saved["parts"].items():
        getattr(net, name).load_state_dict(copy.deepcopy(state))
    net.history = copy.deepcopy(saved["history"])
    restore(net, saved["train_state"])
