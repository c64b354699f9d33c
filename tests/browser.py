"""A real browser for the UI tests: headless Chromium driven by Selenium, offline.

The ``browser`` fixture (session scope) yields one ``selenium.webdriver.Chrome``; a test module
uses it with ``from browser import browser  # noqa: F401``. The helpers below read what the
Prefect UI (the v2 UI bundled in the ``prefect`` wheel) renders:

- :func:`open_artifact_table` - the latest table artifact of a key, as rows of cell texts;
- :func:`open_markdown_artifact` - the latest markdown artifact of a key, as rendered text;
- :func:`open_flow_run_artifacts` - the cards of a flow run's Artifacts tab;
- :func:`save_screenshot` - a PNG of the current page under ``tests/output/ui/``.

Browser and driver are Debian's ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``
installs them). The driver is given to Selenium by path, so Selenium Manager never runs (it would
try to download a driver); Chromium runs with a fresh profile and its background networking off.

Without Chromium (or chromedriver, or the ``selenium`` package) the tests that use ``browser``
are skipped - unless ``PREFECT_TORCH_REQUIRE_BROWSER`` is set (CI), which makes them fail instead.

UI routes (v2 UI, under ``/v2`` of the server; ``/`` redirects there, while ``/artifacts`` without
the prefix is the old v1 UI): ``/v2/artifacts`` (latest per key), ``/v2/artifacts/key/<key>``
(versions, newest first), ``/v2/artifacts/artifact/<id>`` (one artifact rendered) and
``/v2/runs/flow-run/<id>?tab=Artifacts``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
REQUIRE_ENV = "PREFECT_TORCH_REQUIRE_BROWSER"
OUTPUT_ENV = "PREFECT_TORCH_TEST_OUTPUT"
WAIT_TIMEOUT = 30.0  # seconds for a page to render; a page renders in 0.5-2 s on a 2-core machine
WINDOW_SIZE = (1600, 1000)

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm in containers crashes the renderer
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--password-store=basic",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    # chromedriver talks to Chromium over a pipe instead of a TCP port: no port to race for, and
    # Chromium exits when the pipe closes, i.e. when chromedriver ends (even by SIGKILL)
    "--remote-debugging-pipe",
)

# DOM of the v2 UI (prefect 3.9)
TABLE_ROOT = '[data-testid="table-display"]'
MARKDOWN_ROOT = '[data-testid="markdown-display"]'
FLOW_RUN_ARTIFACTS = '[data-testid="flow-run-artifacts-grid"]'
ARTIFACT_LINK = 'a[href*="/artifacts/artifact/"]'
NEXT_PAGE = 'button[aria-label="Go to next page"]'
SKELETON = '[data-slot="skeleton"], .animate-pulse'

def find_browser() -> tuple[str | None, str | None]:
    """Paths of the Chromium executable and of chromedriver (None where not installed)."""
    def find(*names: str) -> str | None:
        for name in names:
            path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
            if path:
                return path
        return None

    return find("chromium", "chromium-browser"), find("chromedriver")


def browser_required() -> bool:
    """True when ``PREFECT_TORCH_REQUIRE_BROWSER`` is set to anything but 0/false/no/off/empty."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}


def _missing_browser(reason: str) -> None:
    if browser_required():
        pytest.fail(f"{reason}, and {REQUIRE_ENV} is set (install it: bash scripts/install_browser.sh)",
                    pytrace=False)
    pytest.skip(f"{reason} (bash scripts/install_browser.sh installs it; set {REQUIRE_ENV}=1 "
                "to fail instead of skipping)")


def start_browser(profile_dir: str | os.PathLike[str]) -> Any:
    """A headless Chromium under chromedriver, with its profile in ``profile_dir``.

    Skips (or fails, see the module docstring) when the browser or Selenium is not installed.
    """
    chromium, driver = find_browser()
    if chromium is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None)
        _missing_browser(f"{missing} not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing_browser("the selenium package is not installed")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.page_load_strategy = "normal"
    log = pathlib.Path(f"{os.fspath(profile_dir).rstrip(os.sep)}.chromedriver.log")
    # an explicit driver path: Selenium Manager (which downloads drivers) is never started
    popen_kw = {"preexec_fn": _parent_death_signal()} if sys.platform.startswith("linux") else {}
    service = Service(executable_path=driver, log_output=str(log), popen_kw=popen_kw)
    try:
        driver_ = webdriver.Chrome(service=service, options=options)
    except Exception as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"chromium ({chromium}) did not start under {driver}: {exc}\n{tail}") from exc
    driver_.set_page_load_timeout(60)
    driver_.set_script_timeout(30)
    return driver_


def _parent_death_signal() -> Any:
    """Linux: a ``preexec_fn`` that has the kernel SIGKILL chromedriver when the thread that
    started it ends (a killed test run leaves no browser behind: Chromium exits with its driver).

    ``prctl`` is looked up here, in the parent (see s3_server.py)."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_pdeathsig() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return set_pdeathsig


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium (a Selenium WebDriver) for the whole session; quit at the end."""
    root = tmp_path_factory.mktemp("browser")
    profile = root / "profile"
    profile.mkdir()
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()


# --- locating the v2 UI ---------------------------------------------------------------------------

def ui_v2_url(ui_url: str) -> str:
    """The base URL of the v2 UI for a server's UI URL (``http://127.0.0.1:4200`` -> ``.../v2``).

    Asks the server's ``/ui-settings`` for ``v2_base_url``; falls back to ``<ui_url>/v2``.
    """
    ui_url = ui_url.rstrip("/")
    if ui_url.endswith("/v2"):
        return ui_url
    try:
        with urllib.request.urlopen(f"{ui_url}/ui-settings", timeout=10) as response:
            v2_base = json.load(response).get("v2_base_url")
    except (OSError, ValueError, urllib.error.URLError):
        v2_base = None
    if not v2_base:
        return f"{ui_url}/v2"
    parts = urllib.parse.urlsplit(ui_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, v2_base.rstrip("/"), "", ""))


def _wait(browser: Any, condition: Any, what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """``WebDriverWait(...).until(condition)`` with a message naming the page and what was awaited."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        text = browser.execute_script("return document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} on {browser.current_url}; "
                             f"page text: {text[:1500]!r}") from None


# --- artifacts ------------------------------------------------------------------------------------

@dataclass
class RenderedTable:
    header: list[str]
    rows: list[list[str]]
    page: str  # the pager's "Page i of n"


_READ_TABLE_JS = f"""
const root = document.querySelector('{TABLE_ROOT}');
if (!root) return null;
const text = (el) => (el.textContent || '').trim();
const header = [...root.querySelectorAll('thead th')].map(text);
const rows = [...root.querySelectorAll('tbody tr')].map(
    (tr) => [...tr.querySelectorAll('td')].map((td) => [text(td), td.colSpan]));
const pager = [...root.querySelectorAll('nav[aria-label="pagination"] li')]
    .map(text).find((t) => /^Page /.test(t)) || '';
return {{header, rows, pager}};
"""


def read_table(browser: Any, previous_page: str | None = None) -> RenderedTable:
    """The table artifact on the current page, once rendered (and, if given, past ``previous_page``).

    Cell texts are the cells' full ``textContent`` (long values are only cut by CSS). An empty
    table (one ``No results`` cell spanning all columns) gives no rows.
    """
    def rendered(driver: Any) -> RenderedTable | None:
        snap = driver.execute_script(_READ_TABLE_JS)
        if not snap or not snap["header"] or not snap["rows"]:
            return None
        if previous_page is not None and snap["pager"] == previous_page:
            return None
        width = len(snap["header"])
        cells = snap["rows"]
        if len(cells) == 1 and len(cells[0]) == 1 and cells[0][0][1] >= width > 1:
            return RenderedTable(snap["header"], [], snap["pager"])  # the empty-table row
        if any(len(row) != width for row in cells):
            return None
        return RenderedTable(snap["header"], [[c[0] for c in row] for row in cells], snap["pager"])

    return _wait(browser, rendered, "the table artifact's rows")


_CLICK_NEXT_JS = f"""
const b = document.querySelector('{TABLE_ROOT} {NEXT_PAGE}');
if (!b || b.disabled) return false;
b.click();
return true;
"""


def _read_all_pages(browser: Any) -> RenderedTable:
    """All rows of a table artifact, following its pager (10 rows a page by default).

    The page re-renders once shortly after it first shows the table (its URL gains ``?tab=``),
    which can swallow a click; the next-page button is therefore looked up afresh and clicked
    again until the pager's "Page i of n" moves on.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def pager(driver: Any) -> str:
        snap = driver.execute_script(_READ_TABLE_JS)
        return snap["pager"] if snap else ""

    table = read_table(browser)
    rows = list(table.rows)
    while True:
        for _ in range(10):
            if not browser.execute_script(_CLICK_NEXT_JS):
                return RenderedTable(table.header, rows, table.page)
            try:
                WebDriverWait(browser, 3, poll_frequency=0.1).until(lambda d: pager(d) != table.page)
                break
            except TimeoutException:
                continue
        else:
            raise AssertionError(f"the table's pager stayed at {table.page!r} on {browser.current_url}")
        table = read_table(browser, previous_page=table.page)
        rows.extend(table.rows)


def latest_artifact_url(browser: Any, ui_url: str, key: str) -> str:
    """Opens ``/artifacts/key/<key>`` and returns the link of the newest version (listed first)."""
    browser.get(f"{ui_v2_url(ui_url)}/artifacts/key/{urllib.parse.quote(key)}")

    def first_link(driver: Any) -> str | None:
        return driver.execute_script(
            f"const a = document.querySelector('{ARTIFACT_LINK}'); return a ? a.href : null;")

    return _wait(browser, first_link, f"a version of artifact {key!r}")


def open_artifact_table(browser: Any, ui_url: str, key: str) -> list[list[str]]:
    """The rendered rows (cell texts, all pages) of the latest table artifact with ``key``.

    Goes through the UI as a user would: the key's version list, then the newest version's page.
    The header is available afterwards via :func:`read_table` (``read_table(browser).header``).
    """
    browser.get(latest_artifact_url(browser, ui_url, key))
    return _read_all_pages(browser).rows


def open_artifact(browser: Any, ui_url: str, artifact_id: str) -> None:
    """Opens one artifact's page, ``/artifacts/artifact/<id>``."""
    browser.get(f"{ui_v2_url(ui_url)}/artifacts/artifact/{artifact_id}")


def open_markdown_artifact(browser: Any, ui_url: str, key: str) -> tuple[str, list[str]]:
    """The rendered text and the link targets of the latest markdown artifact with ``key``."""
    browser.get(latest_artifact_url(browser, ui_url, key))

    def rendered(driver: Any) -> tuple[str, list[str]] | None:
        snap = driver.execute_script(
            f"const r = document.querySelector('{MARKDOWN_ROOT}'); if (!r) return null; "
            "return [r.innerText, [...r.querySelectorAll('a')].map((a) => a.getAttribute('href'))];")
        return (snap[0].strip(), snap[1]) if snap and snap[0].strip() else None

    return _wait(browser, rendered, f"markdown artifact {key!r}")


@dataclass
class ArtifactCard:
    type: str  # TABLE, MARKDOWN, PROGRESS, LINK, ...
    key: str
    url: str


def open_flow_run_artifacts(browser: Any, ui_url: str, flow_run_id: str,
                            expect: int = 1) -> list[ArtifactCard]:
    """The artifact cards of a flow run's Artifacts tab (waits for at least ``expect`` cards)."""
    browser.get(f"{ui_v2_url(ui_url)}/runs/flow-run/{flow_run_id}?tab=Artifacts")
    js = f"""
    const grid = document.querySelector('{FLOW_RUN_ARTIFACTS}');
    if (!grid) return null;
    return [...grid.querySelectorAll('{ARTIFACT_LINK}')].map((a) => [
        (a.querySelector('[data-slot="card-header"]') || a).textContent.trim(),
        (a.querySelector('h3') || a).textContent.trim(), a.href]);
    """

    def cards(driver: Any) -> list[ArtifactCard] | None:
        snap = driver.execute_script(js)
        if snap is None or len(snap) < expect:
            return None
        return [ArtifactCard(*card) for card in snap]

    return _wait(browser, cards, f"{expect} artifact card(s) of flow run {flow_run_id}")


# --- outputs --------------------------------------------------------------------------------------

def output_dir() -> pathlib.Path:
    """Where UI test outputs go: ``$PREFECT_TORCH_TEST_OUTPUT/ui`` (default ``tests/output/ui``)."""
    root = os.environ.get(OUTPUT_ENV) or REPO / "tests" / "output"
    path = pathlib.Path(root) / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_until_settled(browser: Any, timeout: float = 5.0) -> bool:
    """Waits (at most ``timeout`` s) until the page shows no loading skeleton; False if it still does.

    The v2 UI draws grey placeholders (``data-slot="skeleton"``, ``animate-pulse``) while a lazy
    part loads, e.g. the flow-run graph; a screenshot taken then shows a big grey box.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    js = f"return document.querySelectorAll('{SKELETON}').length === 0;"
    try:
        WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(js))
    except TimeoutException:
        return False
    return True


def save_screenshot(browser: Any, name: str, settle: float = 5.0) -> pathlib.Path:
    """A PNG of the browser's viewport as ``<output_dir>/<name>.png``; returns its path.

    Waits up to ``settle`` seconds for loading placeholders to go (see :func:`wait_until_settled`).
    """
    if settle:
        wait_until_settled(browser, settle)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "screenshot"
    path = output_dir() / f"{safe}.png"
    if not browser.save_screenshot(str(path)):
        raise RuntimeError(f"could not save a screenshot to {path}")
    return path


__all__ = [
    "ArtifactCard", "RenderedTable", "browser", "browser_required", "find_browser",
    "latest_artifact_url", "open_artifact", "open_artifact_table", "open_flow_run_artifacts",
    "open_markdown_artifact", "output_dir", "read_table", "save_screenshot", "start_browser",
    "ui_v2_url", "wait_until_settled",
]
