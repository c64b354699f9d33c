"""Hostile checkpoint directories: doctored manifests and ``version.json`` files, paths leading
outside, symbolic links, wrong types, truncated files.

Whatever a directory holds, reading, loading, resuming, pruning and the CLI never read, write or
remove anything outside it; the intact versions still load; every message names the bad entry.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, LoadInitState
from prefect_torch.checkpoint import (
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointStore,
    PendingFile,
)
from prefect_torch.checkpoint.errors import DamagedEntryError
from prefect_torch.cli import main, parser
from prefect_torch.examples import MyModule


# -- what lies outside the checkpoint directory, and checking that it stays as it was ----------
def plant_outside(base: Path, copies: dict[str, Path]) -> None:
    """Files a hostile directory points at: a precious file, a folder, copies of version folders
    (so a followed path would even find matching hashes)."""
    (base / "victim.txt").write_text("precious")
    (base / "victim").mkdir()
    (base / "victim" / "keep.txt").write_text("keep me")
    for name, folder in copies.items():
        shutil.copytree(folder, base / name)


def snapshot(base: Path, inside: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file and folder under ``base`` except ``inside`` (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if Path(root, d) != inside]
        for name in dirs + files:
            path = Path(root, name)
            stat = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            found[str(path)] = (content, stat.st_mtime_ns)
    return found


def fallback_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CheckpointFallbackWarning)]


# -- the directory every case starts from: 3 versions written by a real fit --------------------
@dataclass
class Directory:
    base: Path
    cp: Path
    folders: dict[int, str]  # epoch -> folder (relative)
    weights: dict[int, dict[str, torch.Tensor]]  # epoch -> params of that version
    before: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def manifest(self) -> dict:
        return json.loads((self.cp / "manifest.json").read_text())

    def write_manifest(self, data: Any) -> None:
        (self.cp / "manifest.json").write_text(json.dumps(data))

    def info_path(self, epoch: int) -> Path:
        return self.cp / self.folders[epoch] / "version.json"


@pytest.fixture
def directory(tmp_path, data) -> Directory:
    cp_dir = tmp_path / "cp"
    cp = Checkpoint(monitor=None, dirname=str(cp_dir), keep_last=None)
    NeuralNetClassifier(MyModule, max_epochs=3, verbose=0, callbacks=[cp]).fit(*data)
    versions = cp.store().read_manifest().versions
    folders = {v.epoch: v.folder for v in versions}
    weights = {v.epoch: torch.load(cp_dir / v.folder / "params.pt", weights_only=True) for v in versions}
    plant_outside(tmp_path, {"x": cp_dir / folders[1], "x3": cp_dir / folders[3]})
    return Directory(tmp_path, cp_dir, folders, weights)


# -- the cases ---------------------------------------------------------------------------------
@dataclass
class Case:
    damage: Callable[[Directory], list[str]]  # changes the directory, returns what messages must name
    epoch: int  # the version that loads afterwards


def set_in_manifest(path: tuple, value: Any, named: str) -> Callable[[Directory], list[str]]:
    """Replace the manifest entry at ``path`` with ``value``; messages must say ``named`` (the
    parser's spelling of the entry) and show the value."""
    def damage(d: Directory) -> list[str]:
        data = d.manifest()
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        d.write_manifest(data)
        return ["manifest.json is damaged", named] + ([f"not {value!r}"[:60]] if named.endswith("must be") else [])
    return damage


def folder(value_of: Callable[[Directory], str]) -> Callable[[Directory], list[str]]:
    def damage(d: Directory) -> list[str]:
        value = value_of(d)
        data = d.manifest()
        data["versions"][0]["folder"] = value
        d.write_manifest(data)
        return ["versions[0].folder", repr(value)]
    return damage


def file_name_outside(d: Directory) -> list[str]:
    """The current version names '../victim.txt', in the manifest and in its own version.json."""
    data = d.manifest()
    files = data["versions"][2]["files"]
    files["../victim.txt"] = files.pop("params.pt")
    d.write_manifest(data)
    info = json.loads(d.info_path(3).read_text())
    info["files"]["../victim.txt"] = info["files"].pop("params.pt")
    d.info_path(3).write_text(json.dumps(info))
    return ["versions[2].files name", f"{d.folders[3]}/version.json.files name", "'../victim.txt'"]


def version_json_outside(value_of: Callable[[Directory], str]) -> Callable[[Directory], list[str]]:
    """A damaged manifest, and the current version's version.json naming another folder."""
    def damage(d: Directory) -> list[str]:
        value = value_of(d)
        info = json.loads(d.info_path(3).read_text())
        info["folder"] = value
        d.info_path(3).write_text(json.dumps(info))
        (d.cp / "manifest.json").write_text("{truncated")
        return ["manifest.json is damaged", f"{d.folders[3]}/version.json", repr(value)]
    return damage


def copied_version_json(d: Directory) -> list[str]:
    """A damaged manifest, and version 2's version.json copied into version 3's folder."""
    shutil.copyfile(d.info_path(2), d.info_path(3))
    (d.cp / "manifest.json").write_text("{truncated")
    return [f"{d.folders[3]}/version.json: folder must be {d.folders[3]!r} (the folder it sits in), "
            f"not {d.folders[2]!r}"]


def linked_folder(d: Directory) -> list[str]:
    """The current version's folder is a symbolic link to a copy of itself outside."""
    shutil.rmtree(d.cp / d.folders[3])
    (d.cp / d.folders[3]).symlink_to(d.base / "x3", target_is_directory=True)
    return [d.folders[3], "symbolic link"]


def linked_file(d: Directory) -> list[str]:
    """A file of the current version is a symbolic link to an identical file outside."""
    (d.cp / d.folders[3] / "params.pt").unlink()
    (d.cp / d.folders[3] / "params.pt").symlink_to(d.base / "x3" / "params.pt")
    return [f"{d.folders[3]}/params.pt", "symbolic link"]


def raw_manifest(content: bytes, names: list[str]) -> Callable[[Directory], list[str]]:
    def damage(d: Directory) -> list[str]:
        raw = (d.cp / "manifest.json").read_bytes()
        (d.cp / "manifest.json").write_bytes(content if content != b"HALF" else raw[: len(raw) // 2])
        return names
    return damage


WRONG_TYPES = [
    (("format",), 1, "not a prefect-torch manifest"),
    (("prefix",), 5, "prefix must be"),
    (("current",), "3", "current must be"),
    (("best",), [1], "best must be"),
    (("next_id",), "4", "next_id must be"),
    (("next_id",), -1, "next_id must be"),
    (("generation",), "7", "generation must be"),
    (("writer",), [], "writer must be"),
    (("claims",), {}, "claims must be"),
    (("versions",), {}, "versions must be"),
    (("versions",), None, "versions must be"),
    (("versions", 0), "x", "versions[0] must be"),
    (("versions", 0, "id"), "1", "versions[0].id must be"),
    (("versions", 0, "epoch"), 1.0, "versions[0].epoch must be"),
    (("versions", 0, "folder"), 5, "versions[0].folder must be"),
    (("versions", 0, "files"), [{"key": "f_params"}], "versions[0].files must be"),
    (("versions", 0, "metrics"), [1], "versions[0].metrics must be"),
    (("versions", 0, "metrics", "train_loss"), {"a": 1}, "versions[0].metrics['train_loss'] must be"),
    (("versions", 0, "time"), "yesterday", "versions[0].time must be"),
    (("versions", 0, "time"), 1e300, "versions[0].time must be"),
    (("versions", 0, "time"), 10**400, "versions[0].time must be"),
    (("versions", 0, "epoch"), 10**400, "versions[0].epoch must be"),
    (("versions", 0, "writer"), "me", "versions[0].writer must be"),
    (("versions", 0, "files", "params.pt", "size"), "12", "versions[0].files['params.pt'].size must be"),
    (("versions", 0, "files", "params.pt", "sha256"), 123, "versions[0].files['params.pt'].sha256 must be"),
    (("versions", 0, "files", "params.pt", "key"), None, "versions[0].files['params.pt'].key must be"),
    (("versions", 0, "files", "params.pt"), "x", "versions[0].files['params.pt'] must be"),
    (("writer", "pid"), "12", "writer['pid'] must be"),
    (("claims",), [{"run_count": "2"}], "claims[0]['run_count'] must be int, not '2'"),
]

CASES = {
    "folder ../x": Case(folder(lambda d: "../x"), 3),
    "folder absolute": Case(folder(lambda d: str(d.base / "x")), 3),
    "folder versions": Case(folder(lambda d: "versions"), 3),
    "folder .": Case(folder(lambda d: "."), 3),
    "folder versions/../../x": Case(folder(lambda d: "versions/../../x"), 3),
    "folder of another epoch": Case(folder(lambda d: d.folders[2]), 3),
    "file name ../victim.txt": Case(file_name_outside, 2),
    "version.json folder ../x": Case(version_json_outside(lambda d: "../x"), 2),
    "version.json folder absolute": Case(version_json_outside(lambda d: str(d.base / "x3")), 2),
    "version.json names another version's folder": Case(copied_version_json, 2),
    "symlinked version folder": Case(linked_folder, 2),
    "symlinked file in a version": Case(linked_file, 2),
    "truncated manifest": Case(raw_manifest(b"HALF", ["manifest.json is damaged", "not valid JSON"]), 3),
    "empty manifest": Case(raw_manifest(b"", ["manifest.json is damaged", "it is empty"]), 3),
    "manifest not JSON": Case(raw_manifest(b"\x00\xff garbage", ["manifest.json is damaged", "not valid JSON"]), 3),
    **{f"{'.'.join(map(str, path))} = {repr(value)[:20]}": Case(set_in_manifest(path, value, named), 3)
       for path, value, named in WRONG_TYPES},
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_directory_is_never_acted_outside(name, directory, data, capsys):
    d, case = directory, CASES[name]
    names = case.damage(d)
    d.before = snapshot(d.base, d.cp)

    # load_params(checkpoint=): the newest intact version, one warning naming the damage
    net = NeuralNetClassifier(MyModule, verbose=0).initialize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.load_params(checkpoint=Checkpoint(monitor=None, dirname=str(d.cp)))
    messages = fallback_messages(caught)
    assert len(messages) == 1, messages
    assert all(n in messages[0] for n in names), (names, messages)
    for key, value in net.module_.state_dict().items():
        assert torch.equal(value, d.weights[case.epoch][key]), key

    # both CLI commands: no crash, exit 1, the damage printed with its entry
    for command in ("verify", "checkpoints"):
        assert main([command, str(d.cp)]) == 1, command
        out = capsys.readouterr().out
        assert all(n in out for n in names), (command, names, out)

    # fit + LoadInitState resumes from the intact version; keep_last=1 prunes after the commit
    cp = Checkpoint(monitor=None, dirname=str(d.cp), keep_last=1)
    net = NeuralNetClassifier(MyModule, max_epochs=1, verbose=0, callbacks=[cp, LoadInitState(cp)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(*data)
    messages = fallback_messages(caught)
    assert len(messages) == 1 and all(n in messages[0] for n in names), (names, messages)
    assert net.history[:, "epoch"] == list(range(1, case.epoch + 2))

    # the directory is whole again: one version, its folder the only one left, no warning
    store = CheckpointStore(d.cp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manifest = store.read_manifest()
        latest = store.latest_verified()
    assert [v.epoch for v in manifest.versions] == [case.epoch + 1] and latest.epoch == case.epoch + 1
    assert [n for n in os.listdir(d.cp / "versions") if not n.startswith(".")] == [latest.folder.split("/")[1]]
    root = torch.load(d.cp / "params.pt", weights_only=True)
    assert all(torch.equal(root[k], v) for k, v in net.module_.state_dict().items())

    # nothing outside was read into a version, written, or removed: same files, contents, mtimes
    assert snapshot(d.base, d.cp) == d.before


def test_symlinked_versions_folder_is_refused_and_nothing_outside_is_written(directory, data):
    d = directory
    (d.base / "elsewhere").mkdir()
    shutil.move(str(d.cp / "versions"), str(d.base / "elsewhere" / "versions"))
    (d.cp / "versions").symlink_to(d.base / "elsewhere" / "versions", target_is_directory=True)
    before = snapshot(d.base, d.cp)
    store = CheckpointStore(d.cp)
    with pytest.raises(CheckpointCorruptError, match=r"versions is a symbolic link"):
        store.latest_verified()
    with pytest.raises(DamagedEntryError, match=r"versions is a symbolic link"):
        store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=4)
    assert main(["verify", str(d.cp)]) == 1
    assert snapshot(d.base, d.cp) == before


def test_root_file_linked_outside_is_replaced_not_written_through(directory, data):
    d = directory
    (d.cp / "params.pt").unlink()
    (d.cp / "params.pt").symlink_to(d.base / "victim.txt")
    (d.cp / "versions" / ".published").write_text("1")  # so that begin() repairs the root files
    before = snapshot(d.base, d.cp)
    cp = Checkpoint(monitor=None, dirname=str(d.cp), keep_last=1)
    net = NeuralNetClassifier(MyModule, max_epochs=1, verbose=0, callbacks=[cp, LoadInitState(cp)]).fit(*data)
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    assert not (d.cp / "params.pt").is_symlink()
    root = torch.load(d.cp / "params.pt", weights_only=True)
    assert all(torch.equal(root[k], v) for k, v in net.module_.state_dict().items())
    assert snapshot(d.base, d.cp) == before


@pytest.mark.parametrize("key", ["f_zzz", "f_module"])
def test_file_keys_the_checkpoint_does_not_save_are_not_loaded(directory, key):
    """A version may list any f_* key; loading takes only the parts the checkpoint saves."""
    d = directory
    data = d.manifest()
    data["versions"][2]["files"]["criterion.pt"]["key"] = key
    d.write_manifest(data)
    net = NeuralNetClassifier(MyModule, verbose=0).initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.load_params(checkpoint=Checkpoint(monitor=None, dirname=str(d.cp)))
    for name, value in net.module_.state_dict().items():
        assert torch.equal(value, d.weights[3][name]), name


def test_manifest_that_is_a_folder_is_damage(directory, capsys):
    d = directory
    (d.cp / "manifest.json").unlink()
    (d.cp / "manifest.json").mkdir()
    with pytest.warns(CheckpointFallbackWarning, match="manifest.json is damaged") as caught:
        assert CheckpointStore(d.cp).latest_verified().epoch == 3
    assert len(caught) == 1
    assert main(["verify", str(d.cp)]) == 1
    assert "manifest.json is damaged" in capsys.readouterr().out


def test_prune_spares_what_the_manifest_on_disk_names(directory):
    """Pruning after a commit acts on the manifest read again from disk, and only while it is
    still this writer's; it removes only folders in the store's own shape."""
    d = directory
    store = CheckpointStore(d.cp, keep_last=1)
    store.begin()  # the writer's baseline: the manifest as it is now
    manifest = store.read_manifest()
    current = manifest.version(manifest.current)
    dropped = [v for v in manifest.versions if v.epoch != 3]
    store._finish(current, dropped, set())  # the manifest on disk still names versions 1 and 2
    assert sorted(os.listdir(d.cp / "versions")) == sorted(
        [f.split("/")[1] for f in d.folders.values()] + [".commit.lock", ".published"])
    orphan = d.cp / "versions" / "epoch-000007-abcdef"
    orphan.mkdir()
    unknown = d.cp / "versions" / "not-a-version"
    unknown.mkdir()
    unfinished = {"versions/epoch-000007-abcdef", "versions/not-a-version"}
    newer = d.manifest()
    newer["generation"] += 1  # another writer committed since: this one prunes nothing
    d.write_manifest(newer)
    store._finish(current, [], unfinished)
    assert orphan.exists()
    d.write_manifest({**newer, "generation": newer["generation"] - 1})
    store._finish(current, [], unfinished)
    assert not orphan.exists() and unknown.exists()  # only the store's own shape is removed


def test_store_refuses_plain_names_it_does_not_write(tmp_path):
    store = CheckpointStore(tmp_path)
    for name in ("../victim.txt", "sub/params.pt", "manifest.json", "versions", ".hidden", ""):
        with pytest.raises(DamagedEntryError, match=re.escape(repr(name))):
            store.commit([PendingFile(name, "f_params", lambda f: f.write(b"x"))], epoch=1)
    assert not (tmp_path / "versions").exists() and not (tmp_path.parent / "victim.txt").exists()
    with pytest.raises(ValueError, match="prefix='a/'"):
        CheckpointStore(tmp_path, prefix="a/")


def test_fsspec_directory_is_never_acted_outside(capsys):
    """The same rules on an fsspec location (``memory://``): nothing outside the URL's prefix."""
    root = f"memory://hostile-{uuid.uuid4().hex}"
    store = CheckpointStore(f"{root}/cp")
    fs = store.location.fs
    try:
        for epoch in (1, 2, 3):
            store.commit(_pending(epoch), epoch=epoch)
        folders = [v.folder for v in store.read_manifest().versions]
        fs.pipe(f"{root}/victim.txt", b"precious")
        for name in ("params.pt", "history.json", "version.json"):
            fs.pipe(f"{root}/x/{name}", fs.cat_file(f"{root}/cp/{folders[0]}/{name}"))
        outside = {p: fs.cat_file(p) for p in fs.find(root) if "/cp/" not in p}
        with pytest.raises(DamagedEntryError, match="not a plain relative path"):
            store.location.read_bytes("../victim.txt")

        manifest = json.loads(fs.cat_file(f"{root}/cp/manifest.json"))
        manifest["versions"][0]["folder"] = "../x"
        fs.pipe(f"{root}/cp/manifest.json", json.dumps(manifest).encode())
        info = json.loads(fs.cat_file(f"{root}/cp/{folders[2]}/version.json"))
        info["folder"] = "../x"
        fs.pipe(f"{root}/cp/{folders[2]}/version.json", json.dumps(info).encode())

        assert main(["verify", f"{root}/cp"]) == 1
        assert "versions[0].folder must be" in capsys.readouterr().out
        reader = CheckpointStore(f"{root}/cp", keep_last=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert reader.latest_verified().epoch == 2  # rebuilt without version 3, whose version.json is hostile
            reader.begin()
            reader.commit(_pending(4), epoch=4)
        messages = fallback_messages(caught)
        assert len(messages) == 1 and "versions[0].folder" in messages[0], messages
        assert f"left out {folders[2]}/version.json.folder must be" in messages[0] and "'../x'" in messages[0]

        newest = reader.read_manifest().versions[-1].folder  # and the rebuild, a version.json pointing outside
        fs.pipe(f"{root}/cp/manifest.json", b"")
        fs.pipe(f"{root}/cp/{newest}/version.json", json.dumps(info).encode())
        with pytest.warns(CheckpointFallbackWarning, match=r"version\.json\.folder must be .*'\.\./x'"):
            CheckpointStore(f"{root}/cp", keep_last=1).commit(_pending(5), epoch=5)
        assert {p: fs.cat_file(p) for p in fs.find(root) if "/cp/" not in p} == outside
    finally:
        fs.rm(root, recursive=True)


# -- the same invariants over random mutations of a manifest or a version.json ----------------
def _pending(epoch: int) -> list[PendingFile]:
    weights = {"w": torch.full((3,), float(epoch))}
    return [PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f)),
            PendingFile("history.json", "f_history", lambda f: f.write(json.dumps([{"epoch": epoch}]).encode()))]


@pytest.fixture(scope="module")
def template():
    """A small directory of 3 versions (no net), on tmpfs when there is one (fast fsyncs)."""
    root = tempfile.mkdtemp(prefix="hostile-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    store = CheckpointStore(Path(root) / "cp", writer={"run_count": 1, "flow_run_id": "abc"})
    store.claim({"run_count": 1, "flow_run_id": "abc"})
    for epoch in (1, 2, 3):
        store.commit(_pending(epoch), epoch=epoch, metrics={"valid_loss": 1 / epoch, "note": "x"}, best=epoch == 1)
    yield Path(root)
    shutil.rmtree(root, ignore_errors=True)


HOSTILE_VALUES = ["../x", "ABSOLUTE", "versions", ".", "..", "../victim.txt", "", "a\x00b", "sub/x",
                  "versions/../../x", "OTHER_FOLDER", "versions/epoch-000001-abcdef/../../x", "manifest.json",
                  "version.json", "params.pt", "history.json", "..\\x", "x" * 300, -1, 0, 1, 2, 3, 2**70,
                  1.5, math.nan, math.inf, True, False, None, [], {}, [1, "x"], {"a": [1]}]
# mostly the values an attacker would pick, sometimes anything at all
HOSTILE = st.integers(0, 9).flatmap(lambda i: st.sampled_from(HOSTILE_VALUES) if i < 7 else st.one_of(
    st.integers(), st.text(max_size=12), st.floats()))


def _dangerous(path: tuple) -> bool:
    """Entries that name paths or versions: folders, file names and entries, pointers, counters."""
    return bool(path) and (path[-1] in ("folder", "current", "best", "next_id", "generation", "files", "epoch")
                           or (len(path) >= 2 and path[-2] == "files"))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _mutate(doc: Any, draw: Callable, folders: list[str], outside: Path) -> Any:
    paths = _paths(doc)
    if not paths:
        return draw(HOSTILE)
    dangerous = [p for p in paths if _dangerous(p)]
    path = draw(st.sampled_from(dangerous if dangerous and draw(st.integers(0, 3)) else paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    value = draw(HOSTILE)
    if value == "ABSOLUTE":
        value = str(outside / "x")
    elif value == "OTHER_FOLDER":
        value = draw(st.sampled_from(folders))
    op = draw(st.sampled_from(["replace", "delete", "rename"] if isinstance(parent, dict) else ["replace"]))
    if op == "replace":
        parent[path[-1]] = value
    elif op == "delete":
        del parent[path[-1]]
    else:
        parent[str(value)] = parent.pop(path[-1])
    return doc


CLI = parser()
NAMED_ENTRY = re.compile(r"manifest\.json is damaged \((versions|next_id|current|best|generation|prefix|claims|"
                         r"writer|the manifest)|version \d+ \(epoch \d+\) is damaged: [^ ]+ ")


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_random_manifest_damage_never_acts_outside(template, draw):
    work = Path(tempfile.mkdtemp(dir=template))
    try:
        _check_one_random_directory(work, template / "cp", draw.draw)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_one_random_directory(work: Path, source: Path, draw: Callable) -> None:
    cp = work / "cp"
    shutil.copytree(source, cp, symlinks=True)
    manifest = json.loads((cp / "manifest.json").read_text())
    folders = [v["folder"] for v in manifest["versions"]]
    plant_outside(work, {"x": cp / folders[0]})

    if draw(st.booleans()):  # the manifest itself, mutated 1 to 3 times, sometimes truncated
        for _ in range(draw(st.integers(1, 3))):
            manifest = _mutate(manifest, draw, folders, work)
        raw = json.dumps(manifest, allow_nan=True).encode()
        if draw(st.integers(0, 9)) == 0:
            raw = raw[: draw(st.integers(0, len(raw)))]
    else:  # a damaged manifest and a mutated version.json: the rebuild path
        info_path = cp / draw(st.sampled_from(folders)) / "version.json"
        info = _mutate(json.loads(info_path.read_text()), draw, folders, work)
        info_path.write_bytes(json.dumps(info, allow_nan=True).encode())
        raw = b"{"
    (cp / "manifest.json").write_bytes(raw)
    before = snapshot(work, cp)

    # either CLI command on the damaged directory (each in about half of the examples): what
    # main() runs, with the parser built once
    args = CLI.parse_args([draw(st.sampled_from(["verify", "checkpoints"])), str(cp)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert args.run(args) in (0, 1)
    assert all(NAMED_ENTRY.search(line) for line in out.getvalue().splitlines() if "manifest.json is damaged" in line)

    store = CheckpointStore(cp, keep_last=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.read_manifest()
        try:
            version = store.latest_verified()
        except CheckpointCorruptError:
            version = None
        if version is not None and "params.pt" in version.files:  # what loads is genuine
            weights = torch.load(store.source(version, "params.pt"), weights_only=True)
            assert torch.equal(weights["w"], torch.full((3,), float(version.epoch)))
        store.begin()
        store.commit(_pending(9), epoch=9)
    damage = [m for m in fallback_messages(caught) if "manifest.json is damaged" in m]
    assert len(damage) <= 1, damage  # one warning for one damaged manifest
    assert all(NAMED_ENTRY.search(m) for m in fallback_messages(caught)), fallback_messages(caught)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = CheckpointStore(cp)
        assert fresh.latest_verified().epoch == 9
    assert torch.equal(torch.load(cp / "params.pt", weights_only=True)["w"], torch.full((3,), 9.0))
    assert snapshot(work, cp) == before
