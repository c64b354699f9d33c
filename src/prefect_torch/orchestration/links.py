"""Links into the Prefect UI that all open the same UI: the one the server shows by default.

A Prefect 3.9 server serves two UIs: the old one (v1) at the UI's root and the new one (v2) under
``/v2``; both know the same routes (``runs/flow-run/<id>``, ``artifacts/key/<key>``, ...), but
only a browser opening the root ``/`` is sent to the default one. A link built from
``PREFECT_UI_URL`` alone therefore opens v1, whatever the server prefers. :func:`ui_url` asks the
server once (``/ui-settings``: ``default_ui``, ``v1_base_url``, ``v2_base_url``) where its default
UI lives, and builds every link there; a server that cannot say (Prefect Cloud, an older server,
no answer within two seconds) gets the plain ``PREFECT_UI_URL`` links Prefect itself prints.

>>> from prefect.settings import PREFECT_UI_URL, temporary_settings
>>> with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:4200/v2"}):   # a UI chosen explicitly
...     flow_run_url("0f6e", tab="Artifacts")
'http://127.0.0.1:4200/v2/runs/flow-run/0f6e?tab=Artifacts'
>>> with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:4200/v2"}):
...     artifact_key_url("mnist-checkpoints")
'http://127.0.0.1:4200/v2/artifacts/key/mnist-checkpoints'
"""
from __future__ import annotations

import functools
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from uuid import UUID

log = logging.getLogger("prefect_torch.orchestration")

SETTINGS_TIMEOUT = 2.0  # seconds to wait for /ui-settings (asked once per UI URL and process)
UI_BASES = ("v1_base_url", "v2_base_url")


def ui_url(path: str = "") -> str | None:
    """``path`` (e.g. ``"runs/flow-run/<id>"``) in the Prefect UI the server opens by default;
    ``None`` when no UI is configured (``PREFECT_UI_URL`` unset, e.g. an ephemeral server)."""
    from prefect.settings import PREFECT_UI_URL

    configured = PREFECT_UI_URL.value()
    if not configured:
        return None
    base = default_ui_base(configured.rstrip("/"))
    return f"{base}/{path.lstrip('/')}" if path else f"{base}/"


def flow_run_url(flow_run_id: UUID | str, tab: str | None = None) -> str | None:
    """A flow run's page in the default UI, on ``tab`` (``"Artifacts"``, ``"Logs"``...) if given."""
    query = f"?{urllib.parse.urlencode({'tab': tab})}" if tab else ""
    return ui_url(f"runs/flow-run/{urllib.parse.quote(str(flow_run_id), safe='')}{query}")


def artifact_key_url(key: str) -> str | None:
    """The page of an artifact key in the default UI: its latest version, and the others."""
    return ui_url(f"artifacts/key/{urllib.parse.quote(key, safe='')}")


@functools.lru_cache(maxsize=16)
def default_ui_base(configured: str) -> str:
    """The base URL of the server's default UI, for a ``PREFECT_UI_URL`` of ``configured``.

    ``configured`` itself when it already names one of the server's UIs (ends with ``/v2``) or
    when the server does not say which is its default."""
    if configured.endswith("/v2"):
        return configured
    settings = _ui_settings(configured)
    default = settings.get("default_ui")
    base = settings.get(f"{default}_base_url") if isinstance(default, str) else None
    if not isinstance(base, str) or not base.startswith("/") or "//" in base or ".." in base.split("/"):
        return configured  # no answer, or not a path on this server: links as Prefect builds them
    parts = urllib.parse.urlsplit(configured)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, base.rstrip("/"), "", ""))


def _ui_settings(configured: str) -> dict[str, Any]:
    """The JSON of ``<configured>/ui-settings``, or ``{}`` (with a debug log) when there is none."""
    try:
        with urllib.request.urlopen(f"{configured}/ui-settings", timeout=SETTINGS_TIMEOUT) as response:
            data = json.load(response)
    except (OSError, ValueError, urllib.error.URLError) as error:
        log.debug("no UI settings at %s/ui-settings (%s); UI links use %s as is", configured, error, configured)
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["ui_url", "flow_run_url", "artifact_key_url", "default_ui_base"]


if __name__ == "__main__":  # pragma: no cover - scripts/prefect_server.sh: ``python -P links.py URL``
    # run as a file (stdlib only, no torch import): the base URL of the default UI of the server at URL
    import sys

    print(default_ui_base(sys.argv[1].rstrip("/")))
