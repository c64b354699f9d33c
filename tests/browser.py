"""A real browser for the UI tests: headless Chromium driven by Selenium, offline.

The ``browser`` fixture (session scope) yields one ``selenium.webdriver.Chrome``; a test module
uses it with ``from browser import browser  # noqa: F401``. The helpers below read what the two
Prefect UIs bundled in the ``prefect`` wheel render; each takes ``ui="v2"`` (the default UI of
prefect 3.9, under ``/v2``) or ``ui="v1"`` (the old one, at the root):

- :func:`open_artifact_table` - the latest table artifact of a key, as rows of cell texts (all pages);
- :func:`open_markdown_artifact` - the latest markdown artifact of a key, as rendered text;
  :func:`markdown_images` and :func:`markdown_code_blocks` - its images and code blocks;
- :func:`read_progress` - a progress artifact's text; :func:`table_header_extents` - where a
  table's header cells end, against what the window shows;
- :func:`open_flow_run_artifacts` - the cards of a flow run's Artifacts tab;
- :func:`save_screenshot` - a PNG of the current page under ``tests/output/ui/``.

Browser and driver are Debian's ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``
installs them). The driver is given to Selenium by path, so Selenium Manager never runs (it would
try to download a driver); Chromium runs with a fresh profile and its background networking off.

Without Chromium (or chromedriver, or the ``selenium`` package) the tests that use ``browser``
are skipped - unless ``PREFECT_TORCH_REQUIRE_BROWSER`` is set (CI), which makes them fail instead.

UI routes, the same in both UIs under their base (:func:`ui_base`: ``/v2`` for v2, ``/`` for v1;
``/`` itself redirects a browser to the default UI): ``/artifacts`` (latest per key),
``/artifacts/key/<key>`` (versions, newest first), ``/artifacts/artifact/<id>`` (one artifact
rendered), ``/runs/flow-run/<id>?tab=Artifacts`` (v1 ignores the tab; see
:func:`open_flow_run_artifacts`).
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
WINDOW_SIZE = (1600, 900)  # a laptop screen: the tables must fit it

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

# What the two UIs of prefect 3.9 render (class names and test ids of their DOM)
UIS = ("v1", "v2")


@dataclass(frozen=True)
class UiDom:
    """CSS selectors of one UI: the roots of a table / markdown / progress artifact's rendering, the
    flow run's artifact cards and the parts of a card."""

    table: str
    markdown: str
    progress: str
    run_artifacts: str
    card_type: str
    card_key: str
    card_description: str


DOM = {
    "v2": UiDom(table='[data-testid="table-display"]', markdown='[data-testid="markdown-display"]',
                progress='[data-testid="progress-display"]', run_artifacts='[data-testid="flow-run-artifacts-grid"]',
                card_type='[data-slot="card-header"]', card_key="h3, h4",
                card_description=".text-muted-foreground.truncate, .italic"),
    "v1": UiDom(table=".artifact-data-table", markdown=".artifact-data-view .artifact-data-markdown",
                progress=".artifact-data-view .artifact-data-progress",
                run_artifacts=".flow-run-artifacts .p-virtual-scroller", card_type=".artifact-card__subheader",
                card_key=".artifact-card__title", card_description=".artifact-card__description-container"),
}
ARTIFACT_LINK = 'a[href*="/artifacts/artifact/"]'
NEXT_PAGE = 'button[aria-label="Go to next page"]'  # v2 pages tables (10 rows); v1 shows all rows
SKELETON = '[data-slot="skeleton"], .animate-pulse'
V1_ARTIFACTS_TAB = "li.p-tab#artifacts"


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


# --- locating the UIs ----------------------------------------------------------------------------

def ui_base(ui_url: str, ui: str = "v2") -> str:
    """The base URL of the ``ui`` ("v1" or "v2") of a server whose UI is at ``ui_url``
    (``http://127.0.0.1:4200`` -> ``http://127.0.0.1:4200/v2`` for v2, itself for v1).

    Asks the server's ``/ui-settings`` for ``v1_base_url`` / ``v2_base_url``; falls back to
    ``<ui_url>`` (v1) and ``<ui_url>/v2``.
    """
    if ui not in UIS:
        raise ValueError(f"ui={ui!r}: the Prefect server serves {UIS}")
    ui_url = ui_url.rstrip("/")
    ui_url = ui_url.removesuffix("/v2")
    try:
        with urllib.request.urlopen(f"{ui_url}/ui-settings", timeout=10) as response:
            base = json.load(response).get(f"{ui}_base_url")
    except (OSError, ValueError, urllib.error.URLError):
        base = None
    if not base:
        return f"{ui_url}/v2" if ui == "v2" else ui_url
    parts = urllib.parse.urlsplit(ui_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, base.rstrip("/"), "", ""))


def ui_of(url: str) -> str:
    """Which UI a browser's URL shows: "v2" under ``/v2``, else "v1"."""
    path = urllib.parse.urlsplit(url).path
    return "v2" if path == "/v2" or path.startswith("/v2/") else "v1"


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


def wait_for_text(browser: Any, text: str, timeout: float = WAIT_TIMEOUT) -> None:
    """Waits until the page shows ``text`` (in ``document.body.innerText``)."""
    _wait(browser, lambda d: text in (d.execute_script("return document.body.innerText") or ""),
          repr(text), timeout)


# --- artifacts ------------------------------------------------------------------------------------

@dataclass
class RenderedTable:
    header: list[str]
    rows: list[list[str]]
    page: str  # the pager's "Page i of n" (v2; "" in v1, which shows every row)


def _read_table_js(ui: str) -> str:
    return f"""
const root = document.querySelector('{DOM[ui].table}');
if (!root) return null;
const text = (el) => (el.textContent || '').trim();
const header = [...root.querySelectorAll('thead th')].map(text);
const rows = [...root.querySelectorAll('tbody tr')].map(
    (tr) => [...tr.querySelectorAll('td')].map((td) => [text(td), td.colSpan]));
const pager = [...root.querySelectorAll('nav[aria-label="pagination"] li')]
    .map(text).find((t) => /^Page /.test(t)) || '';
return {{header, rows, pager}};
"""


def read_table(browser: Any, previous_page: str | None = None, ui: str = "v2") -> RenderedTable:
    """The table artifact on the current page, once rendered (and, if given, past ``previous_page``).

    Cell texts are the cells' full ``textContent`` (long values are only cut by CSS). An empty
    table (one ``No results`` cell spanning all columns) gives no rows. The table is read when
    two polls in a row see the same header and cells (a UI still filling its cells is not read).
    """
    js = _read_table_js(ui)
    last: list[Any] = [None]  # the previous snapshot: a table is read once two polls in a row agree

    def rendered(driver: Any) -> RenderedTable | None:
        snap = driver.execute_script(js)
        stable, last[0] = snap == last[0], snap
        if not snap or not snap["header"] or not snap["rows"] or not stable:
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

    return _wait(browser, rendered, f"the table artifact's rows ({ui})")


def _read_all_pages(browser: Any, ui: str = "v2") -> RenderedTable:
    """All rows of a table artifact, following the v2 pager (10 rows a page by default).

    The page re-renders once shortly after it first shows the table (its URL gains ``?tab=``),
    which can swallow a click; the next-page button is therefore looked up afresh and clicked
    again until the pager's "Page i of n" moves on.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    js = _read_table_js(ui)
    click_next = f"""
const b = document.querySelector('{DOM[ui].table} {NEXT_PAGE}');
if (!b || b.disabled) return false;
b.click();
return true;
"""

    def pager(driver: Any) -> str:
        snap = driver.execute_script(js)
        return snap["pager"] if snap else ""

    table = read_table(browser, ui=ui)
    rows = list(table.rows)
    while True:
        for _ in range(10):
            if not browser.execute_script(click_next):
                return RenderedTable(table.header, rows, table.page)
            try:
                WebDriverWait(browser, 3, poll_frequency=0.1).until(lambda d: pager(d) != table.page)
                break
            except TimeoutException:
                continue
        else:
            raise AssertionError(f"the table's pager stayed at {table.page!r} on {browser.current_url}")
        table = read_table(browser, previous_page=table.page, ui=ui)
        rows.extend(table.rows)


def latest_artifact_url(browser: Any, ui_url: str, key: str, ui: str = "v2") -> str:
    """Opens ``/artifacts/key/<key>`` and returns the link of the newest version (listed first)."""
    browser.get(f"{ui_base(ui_url, ui)}/artifacts/key/{urllib.parse.quote(key)}")

    def first_link(driver: Any) -> str | None:
        return driver.execute_script(
            f"const a = document.querySelector('{ARTIFACT_LINK}'); return a ? a.href : null;")

    return _wait(browser, first_link, f"a version of artifact {key!r} ({ui})")


def open_artifact_table(browser: Any, ui_url: str, key: str, ui: str = "v2") -> list[list[str]]:
    """The rendered rows (cell texts, all pages) of the latest table artifact with ``key``.

    Goes through the UI as a user would: the key's version list, then the newest version's page.
    The header is available afterwards via :func:`read_table` (``read_table(browser, ui=ui).header``).
    """
    browser.get(latest_artifact_url(browser, ui_url, key, ui))
    return _read_all_pages(browser, ui).rows


def open_artifact(browser: Any, ui_url: str, artifact_id: str, ui: str = "v2") -> None:
    """Opens one artifact's page, ``/artifacts/artifact/<id>``."""
    browser.get(f"{ui_base(ui_url, ui)}/artifacts/artifact/{artifact_id}")


def open_markdown_artifact(browser: Any, ui_url: str, key: str, ui: str = "v2") -> tuple[str, list[str]]:
    """The rendered text and the link targets of the latest markdown artifact with ``key``."""
    browser.get(latest_artifact_url(browser, ui_url, key, ui))
    return read_markdown(browser, ui)


def read_markdown(browser: Any, ui: str = "v2") -> tuple[str, list[str]]:
    """The rendered text and the link targets of the markdown artifact on the current page."""
    def rendered(driver: Any) -> tuple[str, list[str]] | None:
        snap = driver.execute_script(
            f"const r = document.querySelector('{DOM[ui].markdown}'); if (!r) return null; "
            "return [r.innerText, [...r.querySelectorAll('a')].map((a) => a.getAttribute('href'))];")
        return (snap[0].strip(), snap[1]) if snap and snap[0].strip() else None

    return _wait(browser, rendered, f"a markdown artifact ({ui})")


@dataclass
class RenderedImage:
    alt: str
    natural_width: int  # 0: the browser could not decode it
    src_prefix: str  # the first characters of its src (``data:image/png;base64,...``)


def markdown_images(browser: Any, ui: str = "v2") -> list[RenderedImage]:
    """The images of the markdown artifact on the current page, once each has finished loading."""
    js = f"""
const r = document.querySelector('{DOM[ui].markdown}');
if (!r) return null;
const imgs = [...r.querySelectorAll('img')];
if (!imgs.every((i) => i.complete)) return null;
return imgs.map((i) => [i.alt, i.naturalWidth, (i.getAttribute('src') || '').slice(0, 30)]);
"""
    snap = _wait(browser, lambda d: d.execute_script(js), f"the markdown's images to load ({ui})")
    return [RenderedImage(*image) for image in snap]


def markdown_code_blocks(browser: Any, ui: str = "v2") -> list[str]:
    """The text of each code block (``<pre>``) of the markdown artifact on the current page, as
    the browser shows it (``innerText``: what a user selects and copies)."""
    js = f"const r = document.querySelector('{DOM[ui].markdown}'); " \
         "return r ? [...r.querySelectorAll('pre')].map((p) => p.innerText) : null;"
    return _wait(browser, lambda d: d.execute_script(js), f"the markdown's code blocks ({ui})")


def read_progress(browser: Any, ui: str = "v2") -> str:
    """The text of the progress artifact on the current page (``Progress: 70%``)."""
    js = f"const p = document.querySelector('{DOM[ui].progress}'); return p ? p.innerText.trim() : null;"
    return _wait(browser, lambda d: d.execute_script(js), f"a progress artifact ({ui})")


@dataclass
class HeaderCell:
    text: str
    right: float  # the header cell's right edge in the viewport (px)
    visible_right: float  # the right edge of what its scrolling boxes and the window leave visible


def table_header_extents(browser: Any, ui: str = "v2") -> tuple[list[HeaderCell], int]:
    """Where the table artifact's header cells end, and the window's width (``innerWidth``).

    ``visible_right`` is the least right edge of the window and of each ancestor that clips or
    scrolls horizontally: a cell with ``right <= visible_right`` shows without scrolling.
    """
    js = f"""
const root = document.querySelector('{DOM[ui].table}');
if (!root) return null;
const cells = [...root.querySelectorAll('thead th')].map((th) => {{
    let visible = window.innerWidth;
    for (let el = th.parentElement; el; el = el.parentElement) {{
        if (getComputedStyle(el).overflowX !== 'visible') visible = Math.min(visible, el.getBoundingClientRect().right);
    }}
    return [(th.textContent || '').trim(), th.getBoundingClientRect().right, visible];
}});
return cells.length ? [cells, window.innerWidth] : null;
"""
    wait_until_settled(browser, WAIT_TIMEOUT)  # widths in the UI's own font
    cells, width = _wait(browser, lambda d: d.execute_script(js), f"the table's header ({ui})")
    return [HeaderCell(*cell) for cell in cells], width


@dataclass
class ArtifactCard:
    type: str  # TABLE, MARKDOWN, PROGRESS, LINK, ... (upper case in both UIs)
    key: str
    url: str
    description: str = ""  # its rendered description (what the card says besides key and date)


def open_flow_run_artifacts(browser: Any, ui_url: str, flow_run_id: str,
                            expect: int = 1, ui: str = "v2") -> list[ArtifactCard]:
    """The artifact cards of a flow run's Artifacts tab (waits for at least ``expect`` cards).

    v1 shows the Logs tab first whatever ``?tab=`` says (the tab list is not ready when it reads
    it), so the Artifacts tab is clicked there.
    """
    browser.get(f"{ui_base(ui_url, ui)}/runs/flow-run/{flow_run_id}?tab=Artifacts")
    if ui == "v1":
        click = f"const t = document.querySelector('{V1_ARTIFACTS_TAB}'); if (!t) return false; t.click(); return true;"
        _wait(browser, lambda d: d.execute_script(click), "the v1 flow run's Artifacts tab")
    return read_flow_run_artifacts(browser, expect, ui)


def read_flow_run_artifacts(browser: Any, expect: int = 1, ui: str = "v2") -> list[ArtifactCard]:
    """The artifact cards on the current page, a flow run's Artifacts tab (at least ``expect``)."""
    dom = DOM[ui]
    js = f"""
const grid = document.querySelector('{dom.run_artifacts}');
if (!grid) return null;
const text = (card, sel) => {{ const el = card.querySelector(sel); return el ? el.textContent.trim() : ''; }};
return [...grid.querySelectorAll('{ARTIFACT_LINK}')].map((a) => [
    text(a, '{dom.card_type}').toUpperCase(), text(a, '{dom.card_key}'), a.href, text(a, '{dom.card_description}')]);
"""

    def cards(driver: Any) -> list[ArtifactCard] | None:
        snap = driver.execute_script(js)
        if snap is None or len(snap) < expect or not all(card[3] for card in snap):
            return None  # (a card without a description says so: "No description")
        return [ArtifactCard(*card) for card in snap]

    return _wait(browser, cards, f"{expect} artifact card(s) of the flow run ({ui})")


def scroll_into_view(browser: Any, selector: str) -> None:
    """Scrolls the first element matching ``selector`` to the top of the window (for screenshots)."""
    browser.execute_script(
        "const el = document.querySelector(arguments[0]); if (el) el.scrollIntoView({block: 'start'});", selector)


# --- outputs --------------------------------------------------------------------------------------

def output_dir() -> pathlib.Path:
    """Where UI test outputs go: ``$PREFECT_TORCH_TEST_OUTPUT/ui`` (default ``tests/output/ui``)."""
    root = os.environ.get(OUTPUT_ENV) or REPO / "tests" / "output"
    path = pathlib.Path(root) / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_until_settled(browser: Any, timeout: float = 5.0) -> bool:
    """Waits (at most ``timeout`` s) until the page's web fonts have loaded and it shows no loading
    skeleton; False if it still does not.

    The v2 UI draws grey placeholders (``data-slot="skeleton"``, ``animate-pulse``) while a lazy
    part loads, e.g. the flow-run graph; a screenshot taken then shows a big grey box. Until its
    font (Inter) has loaded, text is drawn in a wider fallback font.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page's own font (the first of body's font-family) has loaded; document.fonts.status can
    # stay "loading" for a face the page never uses
    js = f"""
const family = getComputedStyle(document.body).fontFamily.split(',')[0].replace(/["']/g, '').trim();
const faces = [...document.fonts].filter((f) => f.family.replace(/["']/g, '').trim() === family);
const fontReady = faces.length === 0 || faces.some((f) => f.status === 'loaded');
return fontReady && document.querySelectorAll('{SKELETON}').length === 0;
"""
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
    "DOM", "UIS", "ArtifactCard", "HeaderCell", "RenderedImage", "RenderedTable", "browser", "browser_required",
    "find_browser", "latest_artifact_url", "markdown_code_blocks", "markdown_images", "open_artifact",
    "open_artifact_table", "open_flow_run_artifacts", "open_markdown_artifact", "output_dir", "read_flow_run_artifacts", "read_markdown",
    "read_progress", "read_table", "save_screenshot", "scroll_into_view", "start_browser", "table_header_extents",
    "ui_base", "ui_of", "wait_for_text", "wait_until_settled",
]
