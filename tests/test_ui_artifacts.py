"""The Prefect UIs, in a real (headless) browser, show an experiment as a user browses it.

A flow trains the example classifier with ``fit_in_flow`` against the session's real ``prefect
server start`` (the ``prefect_server`` fixture of tests/prefect_server.py, via conftest.py), then
a second flow run resumes it to more epochs. Chromium opens the pages of its artifacts in both
UIs of Prefect 3.9 (v2, the default, under ``/v2``; v1, the old one, at the root), waits until
they render and compares what they show with the checkpoint directory on disk. Screenshots go to
``tests/output/ui/`` (or ``$PREFECT_TORCH_TEST_OUTPUT/ui``), named ``<ui>-<page>.png``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from browser import (
    DOM,
    UIS,
    browser,  # noqa: F401  (one headless Chromium per session)
    markdown_code_blocks,
    markdown_images,
    open_artifact,
    open_artifact_table,
    open_flow_run_artifacts,
    open_markdown_artifact,
    read_flow_run_artifacts,
    read_progress,
    read_table,
    save_screenshot,
    scroll_into_view,
    table_header_extents,
    ui_base,
    ui_of,
    wait_for_text,
)
from helpers import REPO
from prefect_server import clean_env
from prefect_torch.checkpoint import CheckpointStore

EXPERIMENT = "ui-demo"
KEY = f"{EXPERIMENT}-checkpoints"
MARKDOWN_KEY = f"{EXPERIMENT}-latest"
PROGRESS_KEY = f"{EXPERIMENT}-progress"
HISTORY_KEY = f"{EXPERIMENT}-history"
DATA_SIZE = 300
FIRST_EPOCHS, EPOCHS = 5, 12  # the second run resumes at 6: more than one page (10 rows) of history
HEADER = ["epoch", "version", "current", "best", "train_loss", "valid_loss", "valid_acc", "size", "sha256", "folder"]


# --- the training runs whose artifacts the browser looks at ---------------------------------------

@pytest.fixture(scope="module")
def demo_run(prefect_server, tmp_path_factory) -> dict:
    """Trains ``FIRST_EPOCHS`` epochs with ``fit_in_flow`` (a commit each epoch, keep_last=3) against
    ``prefect_server``, then a second flow run resumes the experiment to ``EPOCHS``."""
    import torch
    from prefect import flow

    from prefect_torch import NeuralNetClassifier
    from prefect_torch.callbacks import Checkpoint
    from prefect_torch.examples import MyModule, make_data
    from prefect_torch.orchestration import fit_in_flow

    dirname = tmp_path_factory.mktemp("ui") / EXPERIMENT

    @flow(name="ui-demo")
    def ui_demo(max_epochs: int) -> dict:
        torch.manual_seed(0)
        net = NeuralNetClassifier(MyModule, max_epochs=max_epochs, lr=0.5, verbose=0,
                                  callbacks=[Checkpoint(monitor=None, dirname=str(dirname))])
        return fit_in_flow(net, *make_data(DATA_SIZE), experiment=EXPERIMENT,
                           data_source="prefect_torch.examples:make_data", data_params={"n_samples": DATA_SIZE})

    first = ui_demo(FIRST_EPOCHS)
    record = ui_demo(EPOCHS)
    assert record["trained_epochs"] == [FIRST_EPOCHS + 1, EPOCHS]
    with prefect_server.client() as client:
        names = {r["flow_run_id"]: client.read_flow_run(r["flow_run_id"]).name for r in (first, record)}
    return {"first": first, "record": record, "dirname": dirname, "names": names,
            "manifest": CheckpointStore(dirname).read_manifest()}


# --- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ui", UIS)
def test_checkpoint_table_renders(browser, prefect_server, demo_run, ui):  # noqa: F811
    rows = open_artifact_table(browser, prefect_server.ui_url, KEY, ui=ui)
    shot = save_screenshot(browser, f"{ui}-checkpoint-table")

    manifest = demo_run["manifest"]
    assert read_table(browser, ui=ui).header == HEADER
    assert [int(row[0]) for row in rows] == [v.epoch for v in manifest.versions]
    for row, version in zip(rows, manifest.versions):
        cells = dict(zip(HEADER, row))
        assert int(cells["version"]) == version.id
        assert cells["sha256"] == version.files["params.pt"].sha256[:12]
        assert float(cells["valid_loss"]) == pytest.approx(version.metrics["valid_loss"], rel=1e-3)
        assert cells["folder"] == version.folder and (demo_run["dirname"] / cells["folder"] / "params.pt").is_file()
        assert cells["current"] == ("current" if version.id == manifest.current else "")
        assert cells["best"] == ("best" if version.id == manifest.best else "")
    assert shot.stat().st_size > 10_000


def test_checkpoint_table_fits_a_laptop_screen(browser, prefect_server, demo_run):  # noqa: F811
    """At 1600x900 every column of the table shows in the v2 UI, without scrolling sideways."""
    browser.set_window_size(1600, 900)
    open_artifact_table(browser, prefect_server.ui_url, KEY, ui="v2")
    cells, width = table_header_extents(browser, ui="v2")
    save_screenshot(browser, "v2-checkpoint-table-1600x900")
    assert width == 1600
    assert [c.text for c in cells] == HEADER
    hidden = [(c.text, round(c.right), round(c.visible_right)) for c in cells if c.right > c.visible_right + 0.5]
    assert not hidden, f"columns cut off at 1600 px (name, right edge, visible up to): {hidden}"
    assert all(c.right <= width for c in cells)


@pytest.mark.parametrize("ui", UIS)
def test_flow_run_artifacts_tab_shows_the_progress(browser, prefect_server, demo_run, ui):  # noqa: F811
    """Each card of the flow run's Artifacts tab; the progress card says how far training got
    (both UIs show a card's description, not its value)."""
    record, first = demo_run["record"], demo_run["first"]
    cards = open_flow_run_artifacts(browser, prefect_server.ui_url, record["flow_run_id"], expect=4, ui=ui)
    scroll_into_view(browser, f"{'.flow-run-artifacts' if ui == 'v1' else '[data-testid=flow-run-artifacts-grid]'}")
    save_screenshot(browser, f"{ui}-flow-run-artifacts-tab")
    assert {(card.type, card.key) for card in cards} == {
        ("TABLE", KEY), ("TABLE", HISTORY_KEY), ("MARKDOWN", MARKDOWN_KEY), ("PROGRESS", PROGRESS_KEY)}
    progress, = (card for card in cards if card.type == "PROGRESS")
    assert progress.description.startswith(f"100% trained: epoch {EPOCHS} of {EPOCHS}"), progress.description

    # the first run's card keeps what it reached, and its page shows the value too
    cards = open_flow_run_artifacts(browser, prefect_server.ui_url, first["flow_run_id"], expect=4, ui=ui)
    progress, = (card for card in cards if card.type == "PROGRESS")
    assert progress.description.startswith(f"100% trained: epoch {FIRST_EPOCHS} of {FIRST_EPOCHS}")
    open_artifact(browser, prefect_server.ui_url, progress.url.rsplit("/", 1)[-1], ui=ui)
    assert read_progress(browser, ui=ui) == "Progress: 100%"


@pytest.mark.parametrize("ui", UIS)
def test_summary_shows_curves_and_code_that_loads_each_version(browser, prefect_server, demo_run, ui,  # noqa: F811
                                                               tmp_path):
    """The summary's curve images have loaded, and each Python snippet, copied from the page as
    the browser shows it, loads the version it names and predicts what that version predicts."""
    text, links = open_markdown_artifact(browser, prefect_server.ui_url, MARKDOWN_KEY, ui=ui)
    images = markdown_images(browser, ui=ui)
    save_screenshot(browser, f"{ui}-summary")
    scroll_into_view(browser, f"{DOM[ui].markdown} pre")
    save_screenshot(browser, f"{ui}-summary-code")
    manifest, record = demo_run["manifest"], demo_run["record"]
    current = record["current"]
    title = "Current and best" if manifest.best == manifest.current else "Current"
    assert f"{title}: epoch {current['epoch']} (version {current['version']})" in text
    assert current["sha256"] in text and "prefect-torch verify" in text

    assert len(images) >= 2, images  # the losses, and the score
    for image in images:
        assert image.src_prefix.startswith("data:image/png;base64,") and image.natural_width > 0, image

    # its links to the tables open them in the server's default UI (v2), whichever UI shows the summary
    default = ui_base(prefect_server.ui_url, "v2")
    tables = [link for link in links if "/artifacts/key/" in link]
    assert tables == [f"{default}/artifacts/key/{HISTORY_KEY}", f"{default}/artifacts/key/{KEY}"], links

    snippets = [code for code in markdown_code_blocks(browser, ui=ui) if "load_params(" in code]
    named = {int(re.search(r"version=(\d+)\)", code)[1]): code for code in snippets}
    assert set(named) == {manifest.current, manifest.best}
    for version, code in named.items():
        expected = predictions_of(demo_run["dirname"], version)
        got = run_snippet(code, tmp_path / f"v{version}.npy")
        assert (got == expected).all(), f"version {version}: the snippet's predictions differ"

    browser.get(tables[0])
    wait_for_text(browser, HISTORY_KEY)
    assert ui_of(browser.current_url) == "v2"


def predictions_of(dirname, version: int):
    """What ``version`` of the checkpoint predicts on the training data, loaded here with load_params."""
    from prefect_torch import NeuralNetClassifier
    from prefect_torch.callbacks import Checkpoint
    from prefect_torch.examples import MyModule, make_data

    net = NeuralNetClassifier(MyModule).initialize()
    net.load_params(checkpoint=Checkpoint(dirname=str(dirname)), version=version)
    return net.predict(make_data(DATA_SIZE)[0])


_snippet_runs: dict[str, np.ndarray] = {}  # code -> its y_pred: both UIs show the same code, run once


def run_snippet(code: str, out: pathlib.Path) -> np.ndarray:
    """Runs ``code`` (as copied from the page) in a new Python in this directory (where the flow
    ran), then saves its ``y_pred``; returns it. The same code (from the other UI) runs once."""
    if code.strip() in _snippet_runs:
        return _snippet_runs[code.strip()]
    script = f"{code}\n\nimport numpy\nnumpy.save({str(out)!r}, y_pred)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"the snippet failed:\n{code}\n{result.stderr[-3000:]}"
    _snippet_runs[code.strip()] = np.load(out)
    return _snippet_runs[code.strip()]


@pytest.mark.parametrize("ui", UIS)
def test_history_table_has_every_epoch(browser, prefect_server, demo_run, ui):  # noqa: F811
    """One row per epoch of the current checkpoint's history.json, over all pages, both runs."""
    rows = open_artifact_table(browser, prefect_server.ui_url, HISTORY_KEY, ui=ui)
    header = read_table(browser, ui=ui).header  # of the page the rows were read from
    browser.refresh()  # back to the first page, as a user opening it sees it
    read_table(browser, ui=ui)
    save_screenshot(browser, f"{ui}-history")
    history = json.loads((demo_run["dirname"] / "history.json").read_text())
    assert len(history) == EPOCHS
    cells = [dict(zip(header, row)) for row in rows]
    assert [int(c["epoch"]) for c in cells] == [h["epoch"] for h in history]
    for c, h in zip(cells, history):
        assert float(c["valid_loss"]) == pytest.approx(h["valid_loss"], rel=1e-3)
    first, second = (demo_run["names"][demo_run[r]["flow_run_id"]] for r in ("first", "record"))
    assert [c["run"] for c in cells] == [first] * FIRST_EPOCHS + [second] * (EPOCHS - FIRST_EPOCHS), (header, rows[:2])


def test_printed_links_open_the_run_in_the_default_ui(browser, prefect_server, demo_run):  # noqa: F811
    """The links the demo prints (orchestration.links) open the run in the UI the server sends
    a browser to from ``/`` (v2 in Prefect 3.9), on the tab they name."""
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    from prefect_torch.orchestration import flow_run_url, links

    browser.get(f"{prefect_server.ui_url}/")
    default_ui = ui_of(browser.current_url)
    assert default_ui == "v2"
    links.default_ui_base.cache_clear()
    with temporary_settings({PREFECT_UI_URL: prefect_server.ui_url}):
        run, tab = (flow_run_url(demo_run["record"]["flow_run_id"]),
                    flow_run_url(demo_run["record"]["flow_run_id"], tab="Artifacts"))
    assert run is not None and tab is not None and ui_of(run) == ui_of(tab) == default_ui

    name = demo_run["names"][demo_run["record"]["flow_run_id"]]
    browser.get(run)
    assert ui_of(browser.current_url) == default_ui
    wait_for_text(browser, name)
    save_screenshot(browser, f"{default_ui}-printed-run-link")

    browser.get(tab)
    cards = read_flow_run_artifacts(browser, expect=4, ui=default_ui)
    assert ui_of(browser.current_url) == default_ui and "tab=Artifacts" in browser.current_url
    assert {card.key for card in cards} >= {KEY, MARKDOWN_KEY, PROGRESS_KEY}


@pytest.mark.slow  # 30-60 s: a new Python process imports prefect and torch, then trains
def test_every_link_the_demo_prints_opens_the_default_ui(browser, prefect_server, tmp_path):  # noqa: F811
    """The demo's path (scripts/prefect_server.sh finds the running server, then
    flows/train_example.py): Prefect's own "View at" line and our two links all open the UI the
    server defaults to, and the run link shows the run there."""
    home = tmp_path / "home"  # no Prefect profile: the script picks the server up by its port
    home.mkdir()
    env = clean_env({"HOME": str(home), "PREFECT_TORCH_PORT": str(prefect_server.port), "OMP_NUM_THREADS": "1",
                     "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                     "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])})
    command = (f'source scripts/prefect_server.sh && python flows/train_example.py --dirname {tmp_path / "cp"} '
               "--max-epochs 2")
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]

    browser.get(f"{prefect_server.ui_url}/")
    default_base = ui_base(prefect_server.ui_url, ui_of(browser.current_url))
    printed = re.findall(r"https?://\S+", output)
    run_links = [link for link in printed if "/runs/flow-run/" in link]
    assert len(run_links) == 3, output  # "View at", "this run in the Prefect UI", "its checkpoints"
    assert all(link.startswith(f"{default_base}/") for link in printed), printed
    name = re.search(r"Beginning flow run '([^']+)'", output)
    assert name, output
    browser.get(run_links[1])
    wait_for_text(browser, name[1])
    assert browser.current_url.startswith(f"{default_base}/")
