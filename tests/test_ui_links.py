"""Links into the Prefect UI (orchestration/links.py) open the UI the server defaults to.

Against the session's real ``prefect server start`` (3.9: both UIs served, v2 the default); the
browser side (the link opens and shows the run) is in tests/test_ui_browse.py.
"""
from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from typing import Iterator

import pytest
from prefect.settings import PREFECT_UI_URL, temporary_settings

from prefect_torch.orchestration import links
from processes import free_port


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    links.default_ui_base.cache_clear()
    yield
    links.default_ui_base.cache_clear()


def test_links_go_to_the_default_ui_of_the_server(prefect_server):
    ui = prefect_server.ui_url
    settings = prefect_server_ui_settings(ui)
    assert settings["default_ui"] == "v2" and settings["v2_base_url"] == "/v2"  # what Prefect 3.9 serves
    with temporary_settings({PREFECT_UI_URL: ui}):
        assert links.flow_run_url("123e4567-e89b-12d3-a456-426614174000") == \
            f"{ui}/v2/runs/flow-run/123e4567-e89b-12d3-a456-426614174000"
        assert links.flow_run_url("abc", tab="Artifacts") == f"{ui}/v2/runs/flow-run/abc?tab=Artifacts"
        assert links.artifact_key_url("ui-demo-history") == f"{ui}/v2/artifacts/key/ui-demo-history"
        assert links.ui_url() == f"{ui}/v2/"
    # the same UI a browser opening the server's root is sent to
    request = urllib.request.Request(f"{ui}/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.url == f"{ui}/v2/"


def prefect_server_ui_settings(ui: str) -> dict:
    with urllib.request.urlopen(f"{ui}/ui-settings", timeout=10) as response:
        return json.load(response)


def test_no_ui_configured_gives_no_link():
    with temporary_settings({PREFECT_UI_URL: ""}):
        assert links.flow_run_url("abc") is None


def test_a_server_that_does_not_say_gets_prefects_own_links():
    """Nothing listening (or Prefect Cloud, which has no /ui-settings): the configured URL as is."""
    dead = f"http://127.0.0.1:{free_port()}"
    with temporary_settings({PREFECT_UI_URL: dead}):
        assert links.flow_run_url("abc") == f"{dead}/runs/flow-run/abc"


@pytest.mark.parametrize("answer", [
    {"default_ui": "v2", "v2_base_url": "https://evil.example/v2"},  # not a path on this server
    {"default_ui": "v2", "v2_base_url": "//evil.example/v2"},
    {"default_ui": "v2", "v2_base_url": "/v2/../../x"},
    {"default_ui": "v3", "v2_base_url": "/v2"},  # a UI it does not list
    {"default_ui": "v2", "v2_base_url": None},
    ["not", "a", "dict"],
])
def test_odd_ui_settings_are_not_followed(answer):
    """What the server answers is untrusted: only a plain path on the same server becomes a link."""
    body = json.dumps(answer).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ui = f"http://127.0.0.1:{server.server_port}"
        with temporary_settings({PREFECT_UI_URL: ui}):
            assert links.flow_run_url("abc") == f"{ui}/runs/flow-run/abc"
    finally:
        server.shutdown()
        server.server_close()


def test_a_ui_url_that_names_the_v2_ui_is_kept():
    with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:1/v2/"}):
        assert links.flow_run_url("abc") == "http://127.0.0.1:1/v2/runs/flow-run/abc"
