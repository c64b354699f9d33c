"""scikit-learn metadata routing for nets: ``set_fit_request`` / ``set_partial_fit_request``.

A net's ``fit`` takes arbitrary ``**fit_params`` (passed on to the module's ``forward``), so
scikit-learn cannot infer their names from the signature: declare them, and a ``Pipeline`` or a
search routes them to the net when routing is enabled.

>>> import numpy as np, sklearn, torch
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import FunctionTransformer
>>> from prefect_torch import NeuralNetRegressor
>>> class Scaled(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.lin = torch.nn.Linear(2, 1)
...     def forward(self, X, scale):
...         return self.lin(X) * scale
>>> X = np.ones((8, 2), np.float32); y = np.ones((8, 1), np.float32)
>>> with sklearn.config_context(enable_metadata_routing=True):
...     net = NeuralNetRegressor(Scaled, max_epochs=1, verbose=0, train_split=None).set_fit_request(scale=True)
...     pipe = make_pipeline(FunctionTransformer(), net).fit(X, y, scale=2.0)
>>> len(net.history)
1
"""
from __future__ import annotations

from typing import Any

from sklearn.utils.metadata_routing import UNUSED, _routing_enabled


def _check_enabled() -> None:
    if not _routing_enabled():
        raise RuntimeError(
            "This method is only available when metadata routing is enabled. You can enable it using "
            "sklearn.set_config(enable_metadata_routing=True).")


class FitRequests:
    """Mixin for :class:`~prefect_torch.NeuralNet`: declare which metadata ``fit`` and
    ``partial_fit`` consume (``alias`` is ``True``, ``False``, ``None`` or another name)."""

    # partial_fit's explicit ``classes`` would make scikit-learn generate a set_partial_fit_request
    # accepting only ``classes``; this keeps the one below, which accepts any name
    __metadata_request__partial_fit = {"classes": UNUSED}

    def _add_requests(self, method: str, aliases: dict[str, Any]) -> Any:
        _check_enabled()
        requests = self._get_metadata_request()  # type: ignore[attr-defined]
        for param, alias in aliases.items():
            getattr(requests, method).add_request(param=param, alias=alias)
        self._metadata_request = requests
        return self

    def set_fit_request(self, **aliases: Any) -> Any:
        """Request metadata for ``fit`` (e.g. ``set_fit_request(Z=True)``); returns the net."""
        return self._add_requests("fit", aliases)

    def set_partial_fit_request(self, **aliases: Any) -> Any:
        """Request metadata for ``partial_fit``; returns the net."""
        return self._add_requests("partial_fit", aliases)
