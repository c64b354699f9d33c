"""Keeping credentials out of reprs, messages and pickles: secrets at any depth of storage options.

>>> options = {"key": "AKIA123", "client_kwargs": {"endpoint_url": "http://s3:8333",
...                                                "aws_secret_access_key": "s3cr3t"}}
>>> masked(options)
{'key': '***', 'client_kwargs': {'endpoint_url': 'http://s3:8333', 'aws_secret_access_key': '***'}}
>>> without_secrets(options)
{'client_kwargs': {'endpoint_url': 'http://s3:8333'}}

A key counts as secret when its name says so (``key``, ``secret``, ``token``, ``password``,
``credentials``, ``auth``...); its whole value goes, whatever it holds.
"""
from __future__ import annotations

import re
from typing import Any

SECRET_NAME = re.compile(r"key|secret|token|passw|credential|auth|signature|connection_string|private",
                         re.IGNORECASE)
MASK = "***"


def is_secret(name: Any) -> bool:
    """True for a key whose name says it holds a credential."""
    return isinstance(name, str) and SECRET_NAME.search(name) is not None


def masked(value: Any) -> Any:
    """``value`` with the value of every secret key (in dicts at any depth, also inside lists)
    replaced by ``'***'``."""
    if isinstance(value, dict):
        return {k: MASK if is_secret(k) else masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [masked(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def without_secrets(value: Any) -> Any:
    """``value`` with every secret key (at any depth) left out, the rest (endpoints...) kept."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not is_secret(k)}
    if isinstance(value, (list, tuple)):
        items = [without_secrets(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value
