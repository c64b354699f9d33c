"""An experiment's whole history, its curves and the code that loads a version, in the Prefect UI
(issue 12, items 1-3): ``<slug>-history`` (one row per epoch ever trained), and the
``<slug>-latest`` summary with curves, a snippet per version and S3 download links.

The rules of the history rows and the snippets are tested without a server first; then real
flows against the session's Prefect server (tests/prefect_server.py) and S3 server
(tests/s3_server.py): the rows after pruning and after a resume by a second flow run, the
snippet copied out of the artifact and run in a fresh process, S3 links fetched with plain
urllib and no credentials.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.checkpoint import CheckpointStore, Manifest, Version
from prefect_torch.checkpoint.store import KEPT_CLAIMS
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration.artifacts import summary_markdown
from prefect_torch.orchestration.experiment_history import (
    EARLIER_RUN,
    PLAIN_FIT,
    HistorySnapshots,
    epoch_snapshot,
    history_rows,
    lineage,
    resume_marks,
)
from prefect_torch.orchestration.loading import (
    LINK_EXPIRES_ENV,
    PLACEHOLDER,
    load_guide,
    load_snippet,
)

SRC = Path(__file__).resolve().parents[1] / "src"


# --- the rules of the rows, without a server ------------------------------------------------------
def claim(session, name, start, run_count=1):
    return {"session": session, "flow_run_name": name, "run_count": run_count, "start": start,
            "epoch": start, "flow_run_id": f"id-{name}"}


def version(id, epoch, session):
    return Version(id=id, epoch=epoch, folder=f"epoch-{epoch:06d}-abcdef", files={}, writer={"session": session})


def snapshot(epochs, saved=True):
    return [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.5 / e, "valid_acc": 0.5, "dur": 0.25,
             "saved": saved} for e in range(1, epochs + 1)]


def manifest(versions, current, best, claims):
    return Manifest(prefix="", versions=versions, current=current, best=best, next_id=20, claims=claims)


def test_rows_name_the_run_that_trained_each_epoch_and_the_state_of_its_version():
    claims = [claim("a", "gentle-fox", 0), claim("b", "brave-owl", 4), claim("c", "brave-owl", 4, run_count=2)]
    kept = [version(3, 2, "a"), version(6, 5, "c"), version(7, 6, "c")]
    rows = history_rows(snapshot(6), claims, kept, manifest(kept, current=7, best=3, claims=claims))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    # epochs 5-6: attempt 2 of brave-owl, which started at 4 after attempt 1 did (and trained nothing left)
    assert [(r["run"], r["attempt"]) for r in rows] == [("gentle-fox", 1)] * 4 + [("brave-owl", 2)] * 2
    assert [r["checkpoint"] for r in rows] == ["pruned", "best", "pruned", "pruned", "kept", "current"]
    assert [r["version"] for r in rows] == ["", 3, "", "", 6, 7]
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "valid_acc", "dur", "run", "attempt",
                             "checkpoint", "version"]
    assert rows[1]["valid_loss"] == pytest.approx(0.75) and rows[0]["dur"] == 0.25


def test_a_resume_from_an_older_epoch_shows_the_retrained_epochs_and_their_versions():
    # fox trained 1-5; owl resumed from version 3 (epoch 3) and trained 4-5 again: two versions hold epoch 4
    claims = [claim("a", "fox", 0), claim("b", "owl", 3)]
    kept = [version(4, 4, "a"), version(5, 5, "a"), version(6, 4, "b"), version(7, 5, "b")]
    rows = history_rows(snapshot(5), claims, kept, manifest(kept, current=7, best=4, claims=claims))
    assert [r["run"] for r in rows] == ["fox"] * 3 + ["owl"] * 2
    assert [r["version"] for r in rows[3:]] == [6, 7]  # this history's versions, not fox's abandoned ones
    assert [r["checkpoint"] for r in rows[3:]] == ["kept", "current"]  # best (fox's epoch 4) is not in it
    assert resume_marks(lineage(claims), 5) == [(3, "run owl")]
    # owl's own epoch 5 was pruned; fox's epoch 5 (the best) is kept, but it is not this history's
    kept = [version(5, 5, "a"), version(8, 6, "b"), version(9, 7, "b")]
    rows = history_rows(snapshot(7), claims, kept, manifest(kept, current=9, best=5, claims=claims))
    assert [(r["checkpoint"], r["version"]) for r in rows[3:]] == [("pruned", ""), ("pruned", ""), ("kept", 8),
                                                                   ("current", 9)]


def test_epochs_before_the_oldest_kept_claim():
    rows = history_rows(snapshot(3), [claim("z", "late", 2)], [])
    assert [r["run"] for r in rows] == [PLAIN_FIT, PLAIN_FIT, "late"]  # no claim dropped: trained by net.fit
    full = [claim(f"s{i}", f"run{i}", 2 + i) for i in range(KEPT_CLAIMS)]
    rows = history_rows(snapshot(3), full, [])
    assert [r["run"] for r in rows] == [EARLIER_RUN, EARLIER_RUN, "run0"]  # older claims were dropped
    assert [r["attempt"] for r in rows] == ["", "", 1]
    assert history_rows(snapshot(2, saved=False), [], [])[0]["checkpoint"] == "not saved"


def test_resume_marks_show_where_a_run_or_attempt_took_over():
    claims = [claim("a", "fox", 0), claim("b", "fox", 3, run_count=2), claim("c", "owl", 6), claim("d", "elk", 9)]
    assert resume_marks(lineage(claims), 9) == [(3, "run fox, attempt 2"), (6, "run owl")]  # elk trained nothing yet
    assert resume_marks(lineage([claim("a", "fox", 0), claim("b", "fox", 0, run_count=2)])) == [(0, "run fox, attempt 2")]
    # an attempt that crashed at its start and was started again from the same epoch leaves one mark
    chain = lineage([claim("a", "fox", 0), claim("b", "owl", 5), claim("c", "owl", 5, 2)])
    assert resume_marks(chain, 8) == [(5, "run owl, attempt 2")]


def test_the_chain_of_loaded_versions_skips_an_abandoned_resume():
    # fox trained 1-5; owl resumed from fox's epoch 3 and crashed before committing; elk resumed from
    # fox's epoch 5 and trained 6-7. Epochs 4-5 are fox's: owl's work was abandoned.
    claims = [{**claim("a", "fox", 0), "from": None}, {**claim("b", "owl", 3), "from": "a"},
              {**claim("c", "elk", 5), "from": "a"}]
    kept = [version(5, 5, "a"), version(6, 6, "c"), version(7, 7, "c")]
    rows = history_rows(snapshot(7), claims, kept, manifest(kept, current=7, best=5, claims=claims), head="c")
    assert [r["run"] for r in rows] == ["fox"] * 5 + ["elk"] * 2
    assert [r["checkpoint"] for r in rows[4:]] == ["best", "kept", "current"]
    assert resume_marks(lineage(claims, "c"), 7) == [(5, "run elk")]
    # without "from" (claims of older versions) the newest claim started before wins: owl, wrongly
    old = [{k: v for k, v in c.items() if k != "from"} for c in claims]
    assert [r["run"] for r in history_rows(snapshot(7), old, kept)][3:5] == ["owl", "owl"]
    # a damaged chain (a cycle) ends it: the older epochs are not attributed to anyone
    cyclic = [{**claim("a", "fox", 2), "from": "b"}, {**claim("b", "owl", 4), "from": "a"}]
    assert [r["run"] for r in history_rows(snapshot(5), cyclic, [], head="b")] == ["fit"] * 2 + ["fox"] * 2 + ["owl"]


def test_the_snapshot_keeps_numbers_and_the_checkpoint_flag_only():
    history = [{"epoch": 1, "train_loss": 0.5, "valid_acc": 0.7, "valid_loss_best": True, "dur": 0.2,
                "event_cp": True, "checkpoint_errors": 0, "train_batch_count": 3, "batches": [{"train_loss": 1}],
                "checkpoint_skipped": "train_loss is nan"}]
    assert epoch_snapshot(history) == [{"epoch": 1, "train_loss": 0.5, "valid_acc": 0.7, "dur": 0.2, "saved": True}]
    assert epoch_snapshot(history, None)[0]["saved"] is None


def test_repeated_snapshots_read_only_new_epochs_and_follow_a_replaced_history():
    history = [{"epoch": e, "train_loss": 1 / e, "event_cp": True, "batches": [{}]} for e in range(1, 6)]
    snapshots = HistorySnapshots()
    first = snapshots.take(history)
    history[3]["train_loss"] = -1.0  # an old epoch is not read again (it no longer changes in training)...
    history[4]["event_cp"] = False  # ...the newest are: a failed commit clears the flag after the epoch
    history.append({"epoch": 6, "train_loss": 0.1})
    second = snapshots.take(history)
    assert [r["epoch"] for r in second] == [1, 2, 3, 4, 5, 6] and second[0] is first[0]
    assert second[3]["train_loss"] == 0.25 and second[4]["saved"] is False and first[4]["saved"] is True
    restored = [dict(row) for row in history[:3]]  # a retry restored a checkpoint: new epoch dicts
    restored[2]["train_loss"] = 0.3
    assert snapshots.take(restored) == epoch_snapshot(restored)


# --- the snippet and its data, without a server ---------------------------------------------------
def test_the_snippet_rebuilds_what_can_be_imported_and_marks_the_rest(tmp_path):
    cp = Checkpoint(monitor=None, dirname="runs/exp", fn_prefix="main_",
                    storage_options={"key": "AKIA", "secret": "s3cr3t-value", "endpoint_url": "http://s3:8333"})
    net = NeuralNetClassifier(MyModule, module__num_units=7, callbacks=[cp])
    snippet = load_snippet(load_guide(net, cp, data_source="prefect_torch.examples:make_data",
                                      data_params={"n_samples": 50}), 4)
    assert "net = NeuralNetClassifier(MyModule, module__num_units=7)" in snippet
    assert "X, y = make_data(n_samples=50)" in snippet
    assert ("cp = Checkpoint(dirname='runs/exp', fn_prefix='main_', storage_options={'endpoint_url': "
            "'http://s3:8333'})\nnet.load_params(checkpoint=cp, version=4)") in snippet
    assert "s3cr3t" not in snippet and "AKIA" not in snippet and PLACEHOLDER not in snippet

    local = type("LocalModule", (torch.nn.Module,), {"__module__": "__main__"})  # defined in a script
    guide = load_guide(NeuralNetClassifier(local), cp, X=np.zeros((5, 20), dtype=np.float32))
    assert not guide.runnable
    assert f"net = ...  {PLACEHOLDER}" in guide.net_line and "LocalModule" in guide.net_line
    assert guide.data_line == f"X = ...  {PLACEHOLDER}: your inputs, e.g. float32 array of shape (n, 20)"
    instance = NeuralNetClassifier(MyModule, module__num_units=torch.nn.ReLU())  # not a literal
    assert PLACEHOLDER in load_guide(instance, cp).net_line
    with pytest.raises(ValueError, match="data_source='make_data' is not an import path"):
        load_guide(net, cp, data_source="make_data")


def test_the_snippet_of_a_train_flow_or_sweep_net():
    from prefect_torch.orchestration.flows import prepare_net

    net = prepare_net("prefect_torch.examples:make_net", {"num_units": 20, "lr": 0.05}, "runs/trial")
    cp = next(cb for _, cb in net.initialize().callbacks_ if isinstance(cb, Checkpoint))
    guide = load_guide(net, cp, data_source="prefect_torch.examples:make_data", data_params={"n_samples": 100})
    snippet = load_snippet(guide, 3)
    assert guide.runnable and "net = NeuralNetClassifier(MyModule, module__num_units=20)" in snippet
    assert "cp = Checkpoint(dirname='runs/trial')\nnet.load_params(checkpoint=cp, version=3)" in snippet and "X, y = make_data(n_samples=100)" in snippet


def test_the_link_expiry_comes_from_the_environment(monkeypatch):
    cp = Checkpoint(monitor=None, dirname="x")
    monkeypatch.setenv(LINK_EXPIRES_ENV, "120")
    assert load_guide(NeuralNetClassifier(MyModule), cp).link_seconds == 120
    monkeypatch.setenv(LINK_EXPIRES_ENV, "999999")
    with pytest.raises(ValueError, match="PREFECT_TORCH_LINK_EXPIRES='999999'"):
        load_guide(NeuralNetClassifier(MyModule), cp)


# --- curves: the real module, its calls recorded -------------------------------------------------
@pytest.fixture
def curves_calls(monkeypatch):
    """The calls of ``training_curves`` (keyword arguments, the epochs drawn, the thread), recorded."""
    from prefect_torch import curves

    calls, lock, draw = [], threading.Lock(), curves.training_curves

    def recording(history, **kwargs):
        with lock:
            calls.append({"epochs": [row["epoch"] for row in history], **kwargs,
                          "thread": threading.current_thread().name})
        return draw(history, **kwargs)

    monkeypatch.setattr(curves, "training_curves", recording)
    return calls


# --- real flows -----------------------------------------------------------------------------------
def unique(name):
    return f"{name}-{uuid4().hex[:8]}"


def read_artifact(key, flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert len(found) == 1, (key, found)
    data = found[0].data
    return json.loads(data) if isinstance(data, str) and found[0].type == "table" else data


def python_blocks(markdown):
    return re.findall(r"```python\n(.*?)\n```", markdown, re.DOTALL)


def snippet_for(markdown, version_id):
    found = [block for block in python_blocks(markdown) if f"version={version_id})" in block]
    assert len(found) == 1, markdown
    return found[0]


def assert_same_predictions(a, b):
    """Equal labels, and probabilities equal up to float32 noise (``(labels, proba)`` pairs)."""
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-7)


def run_snippet(snippet, cwd, env=None):
    """Runs ``snippet`` as a user would paste it, in a fresh interpreter in ``cwd``; what its net predicts."""
    script = snippet + ("\nimport numpy\nnumpy.save('labels.npy', numpy.asarray(y_pred))"
                        "\nnumpy.save('proba.npy', net.predict_proba(X))\n")
    environment = {**(env or os.environ), "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("[")  # the snippet prints its first predictions
    return np.load(Path(cwd) / "labels.npy"), np.load(Path(cwd) / "proba.npy")


def predictions_of(folder_or_net, X):
    net = folder_or_net
    if not isinstance(net, NeuralNetClassifier):
        net = NeuralNetClassifier(MyModule).initialize()
        net.module_.load_state_dict(torch.load(Path(folder_or_net) / "params.pt", weights_only=True))
    return net.predict(X), net.predict_proba(X)


def train(name, dirname, max_epochs, keep_last, lr=0.3, storage_options=None):
    """A flow run named ``name`` training (or resuming) the example classifier."""
    from prefect import flow

    from prefect_torch.orchestration import fit_in_flow

    @flow(name="history-test", flow_run_name=name)
    def history_flow(experiment):
        torch.manual_seed(0)
        cp = Checkpoint(monitor=None, dirname=dirname, keep_last=keep_last, storage_options=storage_options)
        net = NeuralNetClassifier(MyModule, max_epochs=max_epochs, lr=lr, batch_size=32, verbose=0, callbacks=[cp])
        record = fit_in_flow(net, *make_data(300), experiment=experiment,
                             data_source="prefect_torch.examples:make_data", data_params={"n_samples": 300})
        return net, record

    return history_flow


def test_history_summary_and_snippets_after_pruning_and_a_resume(prefect_server, tmp_path, monkeypatch,
                                                                  curves_calls):
    monkeypatch.chdir(tmp_path)  # the flow runs here; its checkpoint path is relative
    experiment = unique("history")
    first_name, second_name = unique("first"), unique("second")
    net, first = train(first_name, "ckpt/exp", 6, keep_last=2)(experiment)
    store = CheckpointStore(tmp_path / "ckpt" / "exp")
    after_first = store.read_manifest()
    rows = read_artifact(f"{experiment}-history", UUID(first["flow_run_id"]))
    history = json.loads((tmp_path / "ckpt" / "exp" / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [row["epoch"] for row in history] == list(range(1, 7))
    assert [r["run"] for r in rows] == [first_name] * 6 and {r["attempt"] for r in rows} == {1}
    kept = {v.epoch: v for v in after_first.versions}
    assert set(kept) == {5, 6} | {after_first.version(after_first.best).epoch}  # keep_last=2, and the best
    current, best = after_first.version(after_first.current), after_first.version(after_first.best)
    assert best.epoch < current.epoch  # lr 0.3: the best epoch is an early one, so four states show
    for row in rows:
        expected = ("current" if row["epoch"] == current.epoch else "best" if row["epoch"] == best.epoch
                    else "kept" if row["epoch"] in kept else "pruned")
        assert row["checkpoint"] == expected, row
        assert row["version"] == (kept[row["epoch"]].id if row["epoch"] in kept else "")
        assert row["valid_loss"] == pytest.approx(history[row["epoch"] - 1]["valid_loss"], abs=1e-6)
        assert row["dur"] == pytest.approx(history[row["epoch"] - 1]["dur"], abs=1e-3)

    # the summary: curves drawn on the publisher's thread, then code that loads current and best
    text = read_artifact(f"{experiment}-latest", UUID(first["flow_run_id"]))
    assert re.search(r"!\[loss curve\]\(data:image/png;base64,[A-Za-z0-9+/=]+\)", text)
    assert curves_calls and {c["thread"] for c in curves_calls} == {f"prefect-torch-artifacts-{experiment}"}
    last = curves_calls[-1]
    assert last["epochs"] == list(range(1, 7)) and (last["current"], last["best"]) == (6, best.epoch)
    assert f"working directory of the run, `{tmp_path}`" in text
    assert f"`{tmp_path / 'ckpt' / 'exp'}`" in text
    assert f"prefect-torch checkpoints ckpt/exp --version {current.id}" in text
    assert f"prefect-torch export ckpt/exp out/ --version {best.id}" in text
    X, _ = make_data(300)
    for which in (current, best):
        predicted = run_snippet(snippet_for(text, which.id), tmp_path)
        assert_same_predictions(predicted, predictions_of(tmp_path / "ckpt" / "exp" / which.folder, X))
    assert_same_predictions(run_snippet(snippet_for(text, current.id), tmp_path), predictions_of(net, X))

    # a second flow run resumes to 9: its name on epochs 7-9, the resume marked on the curves
    _, second = train(second_name, "ckpt/exp", 9, keep_last=2)(experiment)
    assert second["trained_epochs"] == [7, 9]
    rows = read_artifact(f"{experiment}-history", UUID(second["flow_run_id"]))
    history = json.loads((tmp_path / "ckpt" / "exp" / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [row["epoch"] for row in history] == list(range(1, 10))
    assert [r["run"] for r in rows] == [first_name] * 6 + [second_name] * 3
    manifest = store.read_manifest()
    # each run's claim records where it started and who wrote the version it loaded
    first_claim, second_claim = manifest.claims
    assert (first_claim["flow_run_name"], first_claim["start"], first_claim["from"]) == (first_name, 0, None)
    assert (second_claim["flow_run_name"], second_claim["start"]) == (second_name, 6)
    assert second_claim["from"] == current.writer["session"] == first_claim["session"]
    assert [r["checkpoint"] for r in rows if r["version"] != ""] == [
        ("current, best" if v.id == manifest.current == manifest.best else "current" if v.id == manifest.current
         else "best" if v.id == manifest.best else "kept") for v in sorted(manifest.versions, key=lambda v: v.epoch)]
    assert curves_calls[-1]["resumes"] == [(6, f"run {second_name}")]
    text = read_artifact(f"{experiment}-latest", UUID(second["flow_run_id"]))
    now_current = manifest.version(manifest.current)
    predicted = run_snippet(snippet_for(text, now_current.id), tmp_path)
    assert_same_predictions(predicted, predictions_of(tmp_path / "ckpt" / "exp" / now_current.folder, X))


def test_without_matplotlib_the_summary_says_how_to_get_curves(tmp_path, monkeypatch):
    from prefect_torch import curves
    from prefect_torch.orchestration.artifacts import curve_images

    monkeypatch.setattr(curves, "curves_available", lambda: False)
    images, note = curve_images(snapshot(3), None)
    assert images == {} and "pip install 'prefect-torch[plot]'" in note
    text = summary_markdown("e", CheckpointStore(tmp_path), None, 0, 3, images=images, curves_note=note)
    assert note in text


# --- S3: links that download without credentials, and expire ----------------------------------------
def s3_version(s3_server, max_epochs=2):
    url = s3_server.url(f"links-{uuid4().hex[:8]}")
    cp = Checkpoint(monitor=None, dirname=url, storage_options=s3_server.storage_options())
    NeuralNetClassifier(MyModule, max_epochs=max_epochs, verbose=0, callbacks=[cp]).fit(*make_data(100))
    store = cp.store()
    return cp, store, store.read_manifest()


def links_of(markdown, title="Current"):
    """The download links of the summary's section about the ``title`` version, by file name."""
    section = next(part for part in markdown.split("\n## ") if part.startswith(title))
    return dict(re.findall(r"- ([\w.]+): \[download\]\((https?://[^)]+)\)", section))


def download(link):
    with urllib.request.urlopen(link, timeout=30) as answer:  # no credentials: only the link
        return answer.read()


def test_s3_links_download_the_files_and_expire(s3_server):
    cp, store, manifest = s3_version(s3_server)
    guide = load_guide(NeuralNetClassifier(MyModule), cp, link_seconds=3)
    began = time.time()
    text = summary_markdown("links", store, manifest, 2, 2, guide=guide, now=began)
    links = links_of(text)
    current = manifest.version(manifest.current)
    assert set(links) == set(current.files)
    for name, link in links.items():
        assert hashlib.sha256(download(link)).hexdigest() == current.files[name].sha256
    assert s3_server.secret_key not in text
    assert "storage_options={'endpoint_url': " in text
    time.sleep(max(0.0, began + 4.5 - time.time()))
    with pytest.raises(urllib.error.HTTPError) as expired:
        download(links["params.pt"])
    assert expired.value.code == 403


def test_s3_flow_summary_links_and_no_secret_anywhere(prefect_server, s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = unique("s3-links")
    url = s3_server.url(experiment)
    _, record = train(unique("s3"), url, 3, keep_last=2, storage_options=s3_server.storage_options())(experiment)
    flow_run = UUID(record["flow_run_id"])
    text = read_artifact(f"{experiment}-latest", flow_run)
    manifest = Checkpoint(dirname=url, storage_options=s3_server.storage_options()).store().read_manifest()
    current = manifest.version(manifest.current)
    for title, which in (("Current", current), ("Best", manifest.version(manifest.best))):
        if which.id == current.id and title == "Best":
            continue
        links = links_of(text, title)
        assert set(links) == set(which.files)
        for name, link in links.items():
            assert hashlib.sha256(download(link)).hexdigest() == which.files[name].sha256
    assert re.search(r"without credentials until \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "relative to the working directory" not in text  # an s3:// URL is the same everywhere
    for suffix in ("latest", "history", "checkpoints"):
        assert s3_server.secret_key not in json.dumps(read_artifact(f"{experiment}-{suffix}", flow_run)), suffix
    # the snippet loads the current version from S3 with the credentials of the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in s3_server.env().items() if k.startswith("AWS_")})
    predicted = run_snippet(snippet_for(text, current.id), tmp_path, env)
    X, _ = make_data(300)
    with torch.no_grad():
        expected = NeuralNetClassifier(MyModule).initialize()
        expected.load_params(checkpoint=Checkpoint(dirname=url, storage_options=s3_server.storage_options()),
                             version=current.id)
    assert_same_predictions(predicted, predictions_of(expected, X))

