"""The Prefect UI, in a real (headless) browser, shows the checkpoint artifacts of a training run.

A flow trains the example classifier with ``fit_in_flow`` against the session's real ``prefect
server start`` (the ``prefect_server`` fixture of tests/prefect_server.py, via conftest.py);
Chromium then opens the v2 UI's pages for its artifacts, waits until they render and compares the
cells with the checkpoint manifest on disk. Screenshots go to ``tests/output/ui/`` (or
``$PREFECT_TORCH_TEST_OUTPUT/ui``).
"""
from __future__ import annotations

import pytest

from browser import (
    browser,  # noqa: F401  (one headless Chromium per session)
    open_artifact_table,
    open_flow_run_artifacts,
    open_markdown_artifact,
    read_table,
    save_screenshot,
)
from prefect_torch.checkpoint import CheckpointStore

EXPERIMENT = "ui-demo"
KEY = f"{EXPERIMENT}-checkpoints"
MARKDOWN_KEY = f"{EXPERIMENT}-latest"
HEADER = ["epoch", "train_loss", "valid_loss", "valid_acc", "current", "best", "size", "sha256", "uri", "version"]


# --- the training run whose artifacts the browser looks at -------------------------------------------

@pytest.fixture(scope="module")
def demo_run(prefect_server, tmp_path_factory) -> dict:
    """Trains 4 epochs with ``fit_in_flow`` (keep_last=3) against ``prefect_server``."""
    from prefect import flow

    from prefect_torch import NeuralNetClassifier
    from prefect_torch.callbacks import Checkpoint
    from prefect_torch.examples import MyModule, make_data
    from prefect_torch.orchestration import fit_in_flow

    dirname = tmp_path_factory.mktemp("ui") / EXPERIMENT

    @flow(name="ui-demo")
    def ui_demo() -> dict:
        net = NeuralNetClassifier(MyModule, max_epochs=4, lr=0.5, verbose=0,
                                  callbacks=[Checkpoint(monitor="valid_loss_best", dirname=str(dirname))])
        return fit_in_flow(net, *make_data(300), experiment=EXPERIMENT)

    record = ui_demo()
    return {"record": record, "manifest": CheckpointStore(dirname).read_manifest()}


# --- the tests -----------------------------------------------------------------------------------

def test_checkpoint_table_renders(browser, prefect_server, demo_run):  # noqa: F811
    rows = open_artifact_table(browser, prefect_server.ui_url, KEY)
    shot = save_screenshot(browser, "checkpoint-table")

    manifest = demo_run["manifest"]
    assert read_table(browser).header == HEADER
    assert [int(row[0]) for row in rows] == [v.epoch for v in manifest.versions]
    for row, version in zip(rows, manifest.versions):
        cells = dict(zip(HEADER, row))
        assert cells["sha256"] == version.files["params.pt"].sha256[:16]
        assert float(cells["valid_loss"]) == pytest.approx(version.metrics["valid_loss"], abs=1e-6)
        assert cells["uri"].endswith(version.folder)
        assert cells["current"] == ("current" if version.id == manifest.current else "")
        assert cells["best"] == ("best" if version.id == manifest.best else "")
    assert shot.stat().st_size > 10_000


def test_flow_run_artifacts_tab_and_markdown(browser, prefect_server, demo_run):  # noqa: F811
    record = demo_run["record"]
    cards = open_flow_run_artifacts(browser, prefect_server.ui_url, record["flow_run_id"], expect=4)
    save_screenshot(browser, "flow-run-artifacts-tab")
    assert {(card.type, card.key) for card in cards} == {
        ("TABLE", KEY), ("TABLE", f"{EXPERIMENT}-history"), ("MARKDOWN", MARKDOWN_KEY),
        ("PROGRESS", f"{EXPERIMENT}-progress")}

    text, links = open_markdown_artifact(browser, prefect_server.ui_url, MARKDOWN_KEY)
    save_screenshot(browser, "latest-markdown")
    current = record["current"]
    title = "Current and best" if record["best"] == current else "Current"
    assert f"{title}: epoch {current['epoch']} (version {current['version']})" in text
    assert current["sha256"] in text and "prefect-torch verify" in text
