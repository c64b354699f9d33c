"""A sweep in the Prefect UIs, in a real (headless) browser: the trials' curves and their table.

``sweep_flow`` trains three trials of the example classifier on a local Dask cluster against the
session's real ``prefect server start``; Chromium opens the sweep's ``<sweep>-curves`` summary and
``<sweep>-trials`` table in both UIs (v2 under ``/v2``, v1 at the root). Screenshots go to
``tests/output/ui/`` as ``<ui>-sweep-curves.png`` and ``<ui>-sweep-trials.png``.
"""
from __future__ import annotations

import pytest

from browser import (
    UIS,
    browser,  # noqa: F401  (one headless Chromium per session)
    markdown_images,
    open_artifact_table,
    open_markdown_artifact,
    read_table,
    save_screenshot,
)

pytestmark = pytest.mark.slow  # a Dask cluster of worker processes, each importing torch: about a minute

SWEEP = "ui-sweep"
LRS = (0.2, 0.1, 0.05)
EPOCHS = 3


@pytest.fixture(scope="module")
def sweep_run(prefect_server, tmp_path_factory) -> dict:
    pytest.importorskip("distributed")
    from prefect_torch.orchestration import sweep_flow

    root = tmp_path_factory.mktemp("ui-sweep") / SWEEP
    result = sweep_flow(net_factory="prefect_torch.examples:make_net", data="prefect_torch.examples:make_data",
                        param_grid={"lr": list(LRS)}, root=str(root), max_epochs=EPOCHS,
                        net_params={"verbose": 0}, data_params={"n_samples": 200}, n_workers=2)
    assert len(result["trials"]) == len(LRS)
    return result


@pytest.mark.parametrize("ui", UIS)
def test_sweep_curves_and_trials_render(browser, prefect_server, sweep_run, ui):  # noqa: F811
    text, _ = open_markdown_artifact(browser, prefect_server.ui_url, f"{SWEEP}-curves", ui=ui)
    images = markdown_images(browser, ui=ui)
    save_screenshot(browser, f"{ui}-sweep-curves")
    best = sweep_run["best"]["trial"]
    assert f"Best trial: {best}" in text and f"{len(LRS)} of {len(LRS)} trials finished" in text
    assert len(images) == 1 and images[0].src_prefix.startswith("data:image/png;base64,")
    assert images[0].natural_width > 0

    rows = open_artifact_table(browser, prefect_server.ui_url, f"{SWEEP}-trials", ui=ui)
    header = read_table(browser, ui=ui).header
    save_screenshot(browser, f"{ui}-sweep-trials")
    shown = [dict(zip(header, row)) for row in rows]
    assert sorted(row["trial"] for row in shown) == sorted(row["trial"] for row in sweep_run["trials"])
    marked = [row["trial"] for row in shown if "best" in row.values()]
    assert marked == [best]
