"""prefect_torch.curves: the PNGs decode to the promised size, move with the data, show the marks
asked for and nothing else, survive bad values and a missing matplotlib; a trial's history is read
verified from its store; the sweep's curves artifact text. (The artifact on a real Prefect server:
tests/test_sweep.py.)"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prefect_torch.checkpoint import CheckpointStore, PendingFile
from prefect_torch.curves import (
    BEST_COLOUR,
    CURRENT_COLOUR,
    LOSS_COLOURS,
    RESUME_COLOUR,
    SWEEP_BEST_COLOUR,
    curves_available,
    markdown_image,
    plottable_history,
    sweep_curves,
    training_curves,
)
from prefect_torch.orchestration.trials import plan_trials, trial_history

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def history(n: int = 12, valid: list[float] | None = None, **extra: Any) -> list[dict[str, Any]]:
    """``n`` epochs: train_loss falls from 1.0 to 0.2, valid_loss (given or a gentler fall) inside it."""
    rows = []
    for e in range(1, n + 1):
        train = 1.0 - 0.8 * (e - 1) / max(n - 1, 1)
        rows.append({"epoch": e, "train_loss": train, "valid_loss": valid[e - 1] if valid else 0.3 + 0.4 * train,
                     "valid_acc": 0.5 + 0.03 * e, "dur": 0.01, "valid_loss_best": e == 1, "event_cp": True,
                     "batches": [{"train_loss": train, "train_batch_size": 8}], **extra})
    return rows


def pixels(png: bytes) -> np.ndarray:
    """The image as an (height, width, 3) uint8 array."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def near(png: bytes, colour: str, tolerance: int = 40) -> np.ndarray:
    """A boolean mask of the pixels within ``tolerance`` (per channel) of ``colour`` (``#rrggbb``)."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(pixels(png).astype(int) - rgb) <= tolerance).all(axis=-1)


def test_training_curves_are_a_loss_plot_and_a_score_plot_of_640_by_300():
    images = training_curves(history())
    assert sorted(images) == ["loss", "valid_acc"]
    for png in images.values():
        assert png.startswith(b"\x89PNG")
        assert Image.open(io.BytesIO(png)).size == (640, 300)
    assert near(images["loss"], LOSS_COLOURS["train_loss"]).sum() > 200  # both losses drawn
    assert near(images["loss"], LOSS_COLOURS["valid_loss"]).sum() > 200
    assert training_curves(history()) == images  # the same bytes for the same history


def test_scoring_names_the_score_plot_and_a_loss_does_not_repeat_the_loss_plot():
    rows = history(valid_f1=0.4)
    assert sorted(training_curves(rows, scoring="valid_f1")) == ["loss", "valid_f1"]
    assert sorted(training_curves(rows, scoring="valid_loss")) == ["loss", "valid_acc"]
    assert sorted(training_curves(rows, scoring="not_there")) == ["loss", "valid_acc"]
    only_losses = [{k: v for k, v in row.items() if k not in ("valid_acc", "valid_f1")} for row in rows]
    assert sorted(training_curves(only_losses, scoring="valid_loss")) == ["loss"]


def test_the_valid_curve_moves_when_valid_loss_changes_and_the_train_curve_stays():
    n = 12
    a = training_curves(history(n, valid=[0.3 + 0.03 * e for e in range(n)]))["loss"]
    b = training_curves(history(n, valid=[0.66 - 0.03 * e for e in range(n)]))["loss"]  # same range, reversed
    valid, train = LOSS_COLOURS["valid_loss"], LOSS_COLOURS["train_loss"]
    moved = (near(a, valid) != near(b, valid)).sum()
    assert moved > 300, moved
    # the train curve's own pixels (away from where the valid curves cross it) are the same
    assert (near(a, train) & ~near(b, train)).sum() < 0.2 * near(a, train).sum()


@pytest.mark.parametrize("mark, colour", [("current", CURRENT_COLOUR), ("best", BEST_COLOUR),
                                          ("resumes", RESUME_COLOUR)])
def test_marks_appear_only_when_asked(mark: str, colour: str):
    rows = history(20)
    plain = training_curves(rows)
    value = [(8, "run crimson-fox, attempt 2")] if mark == "resumes" else 14
    marked = training_curves(rows, **{mark: value})
    for name in ("loss", "valid_acc"):
        assert near(plain[name], colour).sum() == 0, name
        assert near(marked[name], colour).sum() > 20, name


def test_the_current_mark_sits_at_its_epoch():
    early = near(training_curves(history(20), current=3)["loss"], CURRENT_COLOUR)
    late = near(training_curves(history(20), current=18)["loss"], CURRENT_COLOUR)
    legend_rows = 52  # the title and legend above the axes (17% of 300 px): the legend shows the marker too
    x_early = np.nonzero(early[legend_rows:])[1].mean()
    x_late = np.nonzero(late[legend_rows:])[1].mean()
    assert x_late - x_early > 300  # 15 of ~19 epochs on a ~560 px wide axes


def test_bad_values_are_skipped_not_fatal():
    rows = history(10)
    rows[2]["valid_loss"] = float("nan")
    rows[3]["train_loss"] = None
    rows[4]["valid_acc"] = float("inf")
    rows[5]["valid_loss"] = "0.4"
    rows.insert(6, "not a row")  # type: ignore[arg-type]
    images = training_curves(rows, current=3, best=99, resumes=[("x", "bad"), (2, "ok")])  # type: ignore[list-item]
    assert sorted(images) == ["loss", "valid_acc"]
    assert training_curves([{"epoch": 1, "train_loss": math.nan, "dur": 1.0}]) == {}
    assert training_curves([]) == {}
    assert sweep_curves({"a": [{"valid_loss": None}], "b": []}) is None


def test_many_epochs_and_trials_stay_small():
    rng = np.random.default_rng(0)
    noisy = [{"epoch": e, "train_loss": 1 / e + rng.normal(0, 0.02), "valid_loss": 1 / e + rng.normal(0, 0.02) + 0.1,
              "valid_acc": 0.8 + rng.normal(0, 0.02)} for e in range(1, 5001)]
    for name, png in training_curves(noisy, current=5000, best=3000, resumes=[(2500, "run a, attempt 2")]).items():
        assert len(png) < 20_000, (name, len(png))  # about 3x as much in full colour
    trials = {f"lr={i / 100},module__num_units={10 * i}": noisy[:50] for i in range(1, 25)}
    png = sweep_curves(trials, best="lr=0.05,module__num_units=50")
    assert png is not None and len(png) < 20_000, len(png or b"")
    assert Image.open(io.BytesIO(png)).size == (640, 360)


def test_sweep_curves_highlight_the_best_trial():
    trials = {f"lr={lr}": [{"epoch": e, "valid_loss": 1.0 / (e * lr * 10)} for e in range(1, 11)]
              for lr in (0.1, 0.2, 0.3)}
    plain = sweep_curves(trials)
    best = sweep_curves(trials, best="lr=0.3")
    assert plain is not None and best is not None
    assert near(plain, SWEEP_BEST_COLOUR, 30).sum() == 0
    assert near(best, SWEEP_BEST_COLOUR, 30).sum() > 300  # a thick line
    assert sweep_curves(trials, metric="valid_acc") is None  # no trial has it


def test_without_matplotlib_nothing_is_drawn_and_nothing_fails(monkeypatch: pytest.MonkeyPatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert curves_available() is False
    assert training_curves(history(), current=3, best=2) == {}
    assert sweep_curves({"a": history()}) is None


def test_markdown_image_round_trips():
    png = training_curves(history())["loss"]
    text = markdown_image(png, "losses [demo]\nof run 2")
    match = re.fullmatch(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert match, text[:80]
    assert match.group(1) == "losses (demo) of run 2"
    assert base64.b64decode(match.group(2)) == png


def test_plottable_history_keeps_numbers_and_refuses_other_shapes():
    rows = plottable_history([{"epoch": 1, "valid_loss": 0.5, "ok": True, "note": "x", "batches": [1],
                               "nan": float("nan"), 3: 1.0}])
    assert rows == [{"epoch": 1, "valid_loss": 0.5}]
    with pytest.raises(ValueError, match="list of epoch objects, not a dict"):
        plottable_history({"epoch": 1})
    with pytest.raises(ValueError, match="epoch 2 of the history is a str"):
        plottable_history([{"epoch": 1}, "x"])


def commit_history(directory: Path, rows: Any, epoch: int) -> None:
    store = CheckpointStore(directory)
    text = json.dumps(rows).encode()
    store.commit([PendingFile("history.json", "f_history", lambda f: f.write(text))], epoch=epoch)


def test_trial_history_reads_the_current_version_verified(tmp_path: Path):
    (trial,) = plan_trials({"lr": [0.1]}, str(tmp_path))
    assert trial_history(trial) is None  # nothing committed
    commit_history(Path(trial.checkpoint_dir), history(2), 2)
    commit_history(Path(trial.checkpoint_dir), history(3), 3)
    rows = trial_history(trial)
    assert [row["epoch"] for row in rows or []] == [1, 2, 3]
    assert rows and rows[0] == {"epoch": 1, "train_loss": 1.0, "valid_loss": 0.7, "valid_acc": 0.53, "dur": 0.01}

    store = CheckpointStore(trial.checkpoint_dir)
    version = store.find("current")
    assert version is not None
    stored = Path(trial.checkpoint_dir, version.folder, "history.json")
    stored.write_text(stored.read_text().replace("0.53", "0.99"))  # changed after the commit
    with pytest.raises(ValueError, match="is not the file committed as version 2"):
        trial_history(trial)


def test_trial_history_refuses_a_committed_history_of_another_shape(tmp_path: Path):
    (trial,) = plan_trials({"lr": [0.1]}, str(tmp_path))
    commit_history(Path(trial.checkpoint_dir), {"epoch": 1}, 1)
    with pytest.raises(ValueError, match="history.json: a history is a JSON list"):
        trial_history(trial)


def test_sweep_curves_markdown_draws_finished_trials_and_warns_about_unreadable_ones(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from prefect_torch.orchestration.sweep import TrialCurves

    trials = plan_trials({"lr": [0.1, 0.2, 0.3]}, str(tmp_path))
    commit_history(Path(trials[0].checkpoint_dir), history(4), 4)
    commit_history(Path(trials[1].checkpoint_dir), "damaged", 4)
    curves = TrialCurves("sweep1", trials, "valid_loss", None, {})
    assert "appear here as trials finish" in curves.markdown({})
    results = {t.name: {"finished": True, "best_score": 0.4 + i / 10, "best_epoch": 4} for i, t in enumerate(trials)}
    results[trials[2].name] = {"state": "Submitted"}
    with caplog.at_level(logging.WARNING, logger="prefect_torch.orchestration"):
        text = curves.markdown(results)
    assert f"the curve of trial {trials[1].name} is left out" in caplog.text
    (data,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    png = base64.b64decode(data)
    assert Image.open(io.BytesIO(png)).size == (640, 360)
    assert near(png, SWEEP_BEST_COLOUR, 30).sum() > 100  # trial 0 is best and has a curve
    assert f"Best trial: **{trials[0].name}**, valid_loss 0.4 at epoch 4. 2 of 3 trials finished." in text
    assert list(curves.histories) == [trials[0].name]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="prefect_torch.orchestration"):
        assert curves.markdown(results) == text  # read once: no second warning, the same image
    assert caplog.text == ""


def test_threads_drawing_at_once_draw_what_one_thread_draws():
    from concurrent.futures import ThreadPoolExecutor

    histories = [history(10 + i) for i in range(4)]
    alone = [training_curves(rows, current=5, best=4) for rows in histories]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda rows: training_curves(rows, current=5, best=4), histories * 2))
    assert together == alone * 2


def test_curves_need_neither_prefect_nor_pyplot():
    import subprocess

    code = ("import sys; sys.modules['prefect'] = None; sys.modules['matplotlib.pyplot'] = None\n"
            "from prefect_torch.curves import training_curves, sweep_curves\n"
            "rows = [{'epoch': e, 'train_loss': 1 / e, 'valid_loss': 1.1 / e, 'valid_acc': e / 10} for e in (1, 2, 3)]\n"
            "assert sorted(training_curves(rows, current=3, best=2, resumes=[(1, 'run a, attempt 2')])) == "
            "['loss', 'valid_acc']\n"
            "assert sweep_curves({'a': rows, 'b': rows}, best='a')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


class FakeClient:
    """Stands for Prefect's sync client: records the artifact updates, or fails them."""

    def __init__(self, sent: list[str], fail: bool):
        self.sent, self.fail = sent, fail

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update_artifact(self, artifact_id: Any, update: Any) -> None:
        if self.fail:
            raise ConnectionError("the API is down")
        self.sent.append(update.data)


@pytest.mark.parametrize("fail", [False, True], ids=["api-up", "api-down"])
def test_sweep_curves_are_sent_from_a_helper_thread_and_never_fail_the_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fail: bool):
    import threading

    from prefect_torch.orchestration import sweep

    created: list[str] = []
    sent: list[str] = []
    senders: set[str] = set()
    monkeypatch.setattr(sweep, "create_markdown_artifact", lambda text, **kw: created.append(text) or "id-1")

    def client(**kw: Any) -> FakeClient:
        senders.add(threading.current_thread().name)
        return FakeClient(sent, fail)

    monkeypatch.setattr(sweep, "get_client", client)
    trials = plan_trials({"lr": [0.1, 0.2]}, str(tmp_path))
    for trial in trials:
        commit_history(Path(trial.checkpoint_dir), history(3), 3)
    curves = sweep.TrialCurves("sweep1", trials, "valid_loss", None, {})
    results: dict[str, dict[str, Any]] = {}
    curves.publish(results)
    for i, trial in enumerate(trials):
        results[trial.name] = {"finished": True, "best_score": 0.5 - i / 10, "best_epoch": 3}
        curves.publish(results)
    with caplog.at_level(logging.WARNING, logger="prefect_torch.orchestration"):
        curves.close()
    assert len(created) == 1 and "appear here as trials finish" in created[0]
    assert senders == {"prefect-torch-curves-sweep1-curves"}  # never the flow's thread
    if fail:
        assert sent == [] and "could not update the curves of sweep sweep1: ConnectionError" in caplog.text
    else:  # the last update shows both trials (earlier ones may have been skipped for newer)
        assert 1 <= len(sent) <= 3 and "2 of 2 trials finished" in sent[-1] and "data:image/png" in sent[-1]
        assert f"Best trial: **{trials[1].name}**" in sent[-1]
