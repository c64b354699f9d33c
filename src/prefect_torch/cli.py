"""``prefect-torch``: look into checkpoint directories from the shell.

    prefect-torch checkpoints exp1             # versions: epoch, metrics, size, current/best, verified
    prefect-torch checkpoints s3://bucket/run --no-verify
    prefect-torch verify exp1                  # exit 0 if every file matches its sha256, 1 if not

A directory is untrusted: a damaged manifest (wrong types, paths leading outside, truncated)
is reported as damage and the versions are listed from their ``version.json`` instead; no
file outside the directory is read.

>>> import tempfile, torch
>>> from prefect_torch.checkpoint import CheckpointStore, PendingFile
>>> folder = tempfile.mkdtemp()
>>> _ = CheckpointStore(folder).commit(
...     [PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=4, metrics={"valid_loss": 0.25})
>>> main(["verify", folder])
ok       version 1 (epoch 4): 1 files, 1.3 kB
all versions intact
0
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from typing import Any, NamedTuple, Sequence

from .checkpoint import CheckpointFallbackWarning, CheckpointStore, Manifest, Version, open_location
from .checkpoint.errors import DamagedEntryError
from .checkpoint.manifest import MANIFEST_SUFFIX, check_prefix

HIDDEN_METRICS = ("dur", "checkpoint_errors", "train_batch_count", "valid_batch_count")


def find_series(directory: str) -> list[str]:
    """The ``fn_prefix`` of every checkpoint series in ``directory`` ('' for plain Checkpoints)."""
    names = open_location(directory).listdir("")
    return [n[: -len(MANIFEST_SUFFIX)] for n in names
            if n.endswith(MANIFEST_SUFFIX) and not n.startswith(".") and _plain_prefix(n[: -len(MANIFEST_SUFFIX)])]


def _plain_prefix(prefix: str) -> bool:
    try:
        check_prefix(prefix)
    except DamagedEntryError:
        return False
    return True


def describe(store: CheckpointStore, manifest: Manifest, verify: bool) -> list[dict[str, Any]]:
    """One record per version: id, epoch, metrics, size, marks, time, check result."""
    rows = []
    for version in sorted(manifest.versions, key=lambda v: v.id):
        problems = store.problems(version) if verify else None
        rows.append({
            "version": version.id,
            "epoch": version.epoch,
            "metrics": version.metrics,
            "size": version.size,
            "current": version.id == manifest.current,
            "best": version.id == manifest.best,
            "time": version.time,
            "folder": store.location.url(version.folder),
            "verified": None if problems is None else not problems,
            "problems": problems or [],
        })
    return rows


def _metric_names(versions: list[Version]) -> list[str]:
    names = {k for v in versions for k in v.metrics if k not in HIDDEN_METRICS and not k.startswith("event_")}
    preferred = [n for n in ("train_loss", "valid_loss") if n in names]
    return preferred + sorted(names - set(preferred))


def human_size(n: int) -> str:
    """``1300`` -> ``'1.3 kB'``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _table(manifest: Manifest, rows: list[dict[str, Any]]) -> str:
    metrics = _metric_names(manifest.versions)
    header = ["version", "epoch", *metrics, "size", "written (UTC)", "marks", "check"]
    body = []
    for row in rows:
        marks = ",".join(m for m in ("current", "best") if row[m]) or "-"
        check = "not checked" if row["verified"] is None else "ok" if row["verified"] else "DAMAGED"
        written = datetime.datetime.fromtimestamp(row["time"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        values = [f"{row['metrics'][m]:.4f}" if isinstance(row["metrics"].get(m), float)
                  else str(row["metrics"].get(m, "")) for m in metrics]
        body.append([str(row["version"]), str(row["epoch"]), *values, human_size(row["size"]), written, marks, check])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    for row in rows:
        for problem in row["problems"]:
            lines.append(f"  version {row['version']}: {problem}")
    return "\n".join(lines)


class Series(NamedTuple):
    """One series of a directory: its store, its manifest (rebuilt if damaged), and the damage
    found in the manifest itself."""

    store: CheckpointStore
    manifest: Manifest
    damage: list[str]


def _stores(directory: str, prefix: str | None) -> list[Series]:
    prefixes = [prefix] if prefix is not None else find_series(directory)
    found = []
    for p in prefixes:
        store = CheckpointStore(directory, prefix=p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CheckpointFallbackWarning)
            manifest = store.read_manifest()
        damage = []
        for warning in caught:
            if issubclass(warning.category, CheckpointFallbackWarning):
                damage.append(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if manifest is not None:
            found.append(Series(store, manifest, damage))
    return found


def cmd_checkpoints(args: argparse.Namespace) -> int:
    stores = _stores(args.directory, args.prefix)
    if not stores:
        print(f"no prefect-torch checkpoints in {args.directory} (no *manifest.json there)", file=sys.stderr)
        return 2
    report, damaged = [], False
    for store, manifest, damage in stores:
        rows = describe(store, manifest, verify=args.verify)
        damaged |= bool(damage) or any(row["verified"] is False for row in rows)
        if args.json:
            report.append({"directory": store.url, "prefix": store.prefix, "damage": damage, "versions": rows})
            continue
        label = f"fn_prefix {store.prefix!r}" if store.prefix else "Checkpoint"
        print(f"{store.url}  [{label}: {len(rows)} versions, current {manifest.current}, best {manifest.best}]")
        for problem in damage:
            print(f"DAMAGED  {problem}")
        print(_table(manifest, rows))
        print()
    if args.json:
        print(json.dumps(report, indent=1))
    return 1 if damaged else 0


def cmd_verify(args: argparse.Namespace) -> int:
    stores = _stores(args.directory, args.prefix)
    if not stores:
        print(f"no prefect-torch checkpoints in {args.directory} (no *manifest.json there)", file=sys.stderr)
        return 2
    bad, bad_manifests = 0, 0
    for store, manifest, damage in stores:
        for problem in damage:
            bad_manifests += 1
            print(f"DAMAGED  {problem}")
        for version in sorted(manifest.versions, key=lambda v: v.id):
            problems = store.problems(version)
            series = f"fn_prefix {store.prefix!r} " if store.prefix else ""
            name = f"{series}version {version.id} (epoch {version.epoch})"
            if problems:
                bad += 1
                print(f"DAMAGED  {name}: {'; '.join(problems)}")
            else:
                print(f"ok       {name}: {len(version.files)} files, {human_size(version.size)}")
    if bad or bad_manifests:
        print(f"{bad} damaged version(s)" + (f", {bad_manifests} damaged manifest(s)" if bad_manifests else ""))
    else:
        print("all versions intact")
    return 1 if bad or bad_manifests else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="prefect-torch", description=__doc__.split("\n\n")[0].replace("``", ""))
    commands = top.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("checkpoints", help="list the versions in a checkpoint directory or URL")
    listing.add_argument("directory", help="a local folder or an fsspec URL such as s3://bucket/run")
    listing.add_argument("--prefix", default=None, help="only the series with this fn_prefix")
    listing.add_argument("--no-verify", dest="verify", action="store_false", help="skip the sha256 checks")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=cmd_checkpoints)
    check = commands.add_parser("verify", help="check every file's sha256; exit 1 if anything is damaged")
    check.add_argument("directory")
    check.add_argument("--prefix", default=None, help="only the series with this fn_prefix")
    check.set_defaults(run=cmd_verify)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.prefix is not None and not _plain_prefix(args.prefix):
        print(f"--prefix {args.prefix!r}: a prefix starts file names, so it has no '/', '\\' or NUL",
              file=sys.stderr)
        return 2
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
