"""``prefect-torch``: look into checkpoint directories from the shell.

    prefect-torch checkpoints exp1             # versions: epoch, metrics, size, current/best, verified
    prefect-torch checkpoints s3://bucket/run --no-verify
    prefect-torch verify exp1                  # exit 0 if every file matches its sha256, 1 if not

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
from typing import Any, Sequence

from .checkpoint import CheckpointStore, Manifest, open_location
from .reporting import describe, human_size, metric_names_of

MANIFEST_SUFFIX = "manifest.json"


def find_series(directory: str) -> list[str]:
    """The ``fn_prefix`` of every checkpoint series in ``directory`` ('' for plain Checkpoints)."""
    names = open_location(directory).listdir("")
    return [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX) and not n.startswith(".")]


def _table(manifest: Manifest, rows: list[dict[str, Any]]) -> str:
    metrics = metric_names_of(v.metrics for v in manifest.versions)
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


def _stores(directory: str, prefix: str | None) -> list[tuple[CheckpointStore, Manifest]]:
    prefixes = [prefix] if prefix is not None else find_series(directory)
    found = []
    for p in prefixes:
        store = CheckpointStore(directory, prefix=p)
        manifest = store.read_manifest()
        if manifest is not None:
            found.append((store, manifest))
    return found


def cmd_checkpoints(args: argparse.Namespace) -> int:
    stores = _stores(args.directory, args.prefix)
    if not stores:
        print(f"no prefect-torch checkpoints in {args.directory} (no *manifest.json there)", file=sys.stderr)
        return 2
    report, damaged = [], False
    for store, manifest in stores:
        rows = describe(store, manifest, verify=args.verify)
        damaged |= any(row["verified"] is False for row in rows)
        if args.json:
            report.append({"directory": store.url, "prefix": store.prefix, "versions": rows})
            continue
        label = f"fn_prefix {store.prefix!r}" if store.prefix else "Checkpoint"
        print(f"{store.url}  [{label}: {len(rows)} versions, current {manifest.current}, best {manifest.best}]")
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
    bad = 0
    for store, manifest in stores:
        for version in sorted(manifest.versions, key=lambda v: v.id):
            problems = store.problems(version)
            series = f"fn_prefix {store.prefix!r} " if store.prefix else ""
            name = f"{series}version {version.id} (epoch {version.epoch})"
            if problems:
                bad += 1
                print(f"DAMAGED  {name}: {'; '.join(problems)}")
            else:
                print(f"ok       {name}: {len(version.files)} files, {human_size(version.size)}")
    print(f"{bad} damaged version(s)" if bad else "all versions intact")
    return 1 if bad else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="prefect-torch", description=__doc__.split("\n\n")[0])
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
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
