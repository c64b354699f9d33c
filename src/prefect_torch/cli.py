"""``prefect-torch``: look into checkpoint directories from the shell.

    prefect-torch checkpoints exp1             # versions: epoch, metrics, size, current/best, verified
    prefect-torch checkpoints s3://bucket/run --no-verify
    prefect-torch verify exp1                  # exit 0 if every file matches its sha256, 1 if not
    prefect-torch checkpoints exp1 --version 3 # one version: files, sizes, sha256, metrics, check
    prefect-torch export exp1 out --version best   # copy its params.pt, history.json... to out/

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
from .checkpoint.errors import CheckpointCorruptError, CheckpointVersionError, DamagedEntryError
from .checkpoint.export import export_version
from .checkpoint.manifest import MANIFEST_SUFFIX, check_prefix
from .checkpoint.store import VersionName
from .reporting import describe, human_size, metric_names_of


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


def parse_version(text: str) -> VersionName:
    """``'current'``, ``'best'``, or a version id from the command line (``'3'`` -> ``3``)."""
    if text in ("current", "best"):
        return text  # type: ignore[return-value]
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: name a version with current, best, or its version id (the "
                                     "'version' column of `prefect-torch checkpoints DIR`, not the epoch)")


def _one_series(directory: str, prefix: str | None) -> Series | str:
    """The series a version is picked from: ``prefix``'s, else the plain Checkpoint's (''),
    else the only one; a message saying why not otherwise."""
    stores = _stores(directory, prefix)
    if not stores:
        return f"no prefect-torch checkpoints in {directory} (no *manifest.json there)"
    if len(stores) == 1:
        return stores[0]
    plain = [series for series in stores if series.store.prefix == ""]
    if plain:
        return plain[0]
    return (f"{directory} holds several checkpoint series ({', '.join(repr(s.store.prefix) for s in stores)}); "
            "pick one with --prefix")


def _load_problems(store: CheckpointStore, version: Version) -> list[str]:
    """What keeps ``version``'s files from loading (torch.load(weights_only=True) or safetensors)."""
    from .callbacks.checkpoint import unloadable_files

    problems = unloadable_files(store, version)
    return min(problems, unloadable_files(store, version, use_safetensors=True), key=len) if problems else []


def _find(series: Series, name: VersionName) -> Version:
    """:meth:`CheckpointStore.find`, verified down to loading; raises what it raises."""
    version = series.store.find(name, check=lambda v: _load_problems(series.store, v))
    if version is None:  # pragma: no cover - a series is listed only with a manifest
        raise CheckpointVersionError(f"checkpoint {series.store.url}: no version committed yet")
    return version


def cmd_version(args: argparse.Namespace) -> int:
    """``prefect-torch checkpoints DIR --version N``: one version's files, sizes, sha256, metrics, check."""
    series = _one_series(args.directory, args.prefix)
    if isinstance(series, str):
        print(series, file=sys.stderr)
        return 2
    store, manifest = series.store, series.manifest
    version_id = manifest.current if args.version == "current" else manifest.best if args.version == "best" \
        else args.version
    version = manifest.version(version_id)
    if version is None:
        try:
            _find(series, args.version)
        except CheckpointVersionError as error:
            print(error, file=sys.stderr)
        return 2
    problems = store.problems(version) if args.verify else []
    if args.verify and not problems:
        problems = _load_problems(store, version)
    record = {
        "directory": store.url, "prefix": store.prefix, "version": version.id, "epoch": version.epoch,
        "current": version.id == manifest.current, "best": version.id == manifest.best, "time": version.time,
        "folder": store.location.url(version.folder), "metrics": version.metrics, "writer": version.writer,
        "files": [{"name": name, "key": entry.key, "size": entry.size, "sha256": entry.sha256}
                  for name, entry in sorted(version.files.items())],
        "verified": (not problems) if args.verify else None, "problems": problems,
    }
    if args.json:
        print(json.dumps(record, indent=1))
        return 1 if problems else 0
    marks = ", ".join(m for m in ("current", "best") if record[m]) or "kept"
    written = datetime.datetime.fromtimestamp(version.time, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    print(f"{store.url}  version {version.id} (epoch {version.epoch}, {marks}), written {written} UTC")
    print(f"folder   {record['folder']}")
    for name in metric_names_of([version.metrics]):
        value = version.metrics[name]
        print(f"  {name} = {value:.6g}" if isinstance(value, float) else f"  {name} = {value}")
    width = max(len(name) for name in version.files)
    for name, entry in sorted(version.files.items()):
        print(f"{name.ljust(width)}  {human_size(entry.size).rjust(8)}  sha256 {entry.sha256}")
    if not args.verify:
        print("check    not checked (--no-verify)")
    elif problems:
        print("check    DAMAGED: " + "; ".join(problems))
    else:
        print("check    ok (sha256 matches, every file loads)")
    prefix = f", fn_prefix={store.prefix!r}" if store.prefix else ""
    print(f"load     net.load_params(checkpoint=Checkpoint(dirname={store.url!r}{prefix}), version={version.id})")
    print(f"export   prefect-torch export {store.url} DEST --version {version.id}"
          + (f" --prefix {store.prefix}" if store.prefix else ""))
    return 1 if problems else 0


def _checkpoints_or_version(args: argparse.Namespace) -> int:
    return cmd_version(args) if args.version is not None else cmd_checkpoints(args)


def cmd_export(args: argparse.Namespace) -> int:
    """``prefect-torch export DIR DEST``: copy one verified version's plain files to a local folder."""
    series = _one_series(args.directory, args.prefix)
    if isinstance(series, str):
        print(series, file=sys.stderr)
        return 2
    try:
        version = _find(series, args.version)
        written = export_version(series.store, version, args.dest, force=args.force)
    except CheckpointVersionError as error:
        print(error, file=sys.stderr)
        return 2
    except (CheckpointCorruptError, OSError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(f"exported version {version.id} (epoch {version.epoch}) of {series.store.url} to {args.dest}:")
    for path in written:
        print(f"  {path}")
    return 0


def _add_version_commands(commands: Any, listing: argparse.ArgumentParser) -> None:
    """``checkpoints --version`` and ``export``."""
    listing.add_argument("--version", type=parse_version, default=None, metavar="current|best|ID",
                         help="show one version: its files, sizes, sha256, metrics and check (ID: the version "
                              "column, not the epoch)")
    listing.set_defaults(run=_checkpoints_or_version)
    export = commands.add_parser("export", help="copy one verified version's plain skorch files to a local folder")
    export.add_argument("directory", help="a local folder or an fsspec URL such as s3://bucket/run")
    export.add_argument("dest", help="a local folder (created if missing); nothing is written outside it")
    export.add_argument("--version", type=parse_version, default="current", metavar="current|best|ID",
                        help="which version (default: current; ID: the version column, not the epoch)")
    export.add_argument("--prefix", default=None, help="the series' fn_prefix (default: the plain Checkpoint's)")
    export.add_argument("--force", action="store_true", help="replace files of the same names in DEST")
    export.set_defaults(run=cmd_export)


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
    _add_version_commands(commands, listing)
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
