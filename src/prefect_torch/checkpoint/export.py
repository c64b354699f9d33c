"""Copy one committed version's plain files (``params.pt``, ``history.json``...) to a folder.

>>> import os, tempfile, torch
>>> from prefect_torch.checkpoint import CheckpointStore, PendingFile
>>> store = CheckpointStore(tempfile.mkdtemp())
>>> v = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({"w": torch.ones(2)}, f))], epoch=1)
>>> dest = tempfile.mkdtemp()
>>> [os.path.basename(path) for path in export_version(store, v, dest)]
['params.pt']
>>> torch.load(os.path.join(dest, "params.pt"), weights_only=True)["w"].tolist()
[1.0, 1.0]

The files keep the names the version lists (with the series' ``fn_prefix``), which are the
names skorch's ``load_params`` and ``Checkpoint`` expect. Each file is hashed while it is
copied and must match the sha256 the manifest recorded, so a file changed during the copy is
never left in the folder under its real name.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

from .errors import CheckpointCorruptError
from .manifest import Version, check_file_name
from .store import CheckpointStore

CHUNK = 1 << 20


def export_version(store: CheckpointStore, version: Version, dest: str | os.PathLike,
                   force: bool = False) -> list[str]:
    """Copy the files of ``version`` into the local folder ``dest`` (created if missing);
    return the paths written.

    Parameters
    ----------
    store : CheckpointStore
        Where the version lives (a local folder or an ``s3://``... URL).
    version : Version
        The version to copy, e.g. from :meth:`CheckpointStore.find`.
    dest : str or os.PathLike
        A local folder. Nothing is written outside it.
    force : bool
        Replace files of the same names already in ``dest``. Without it, existing files are an
        error (``FileExistsError`` naming them) and nothing is written.
    """
    dest = os.path.abspath(os.fspath(dest))
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise NotADirectoryError(f"export to {dest!r}: that is a file, not a folder; name a folder")
    names = sorted(check_file_name(name, f"version {version.id} file name") for name in version.files)
    targets = {name: os.path.join(dest, name) for name in names}
    if any(os.path.dirname(path) != dest for path in targets.values()):  # check_file_name's promise, checked
        raise CheckpointCorruptError(f"version {version.id} names a file outside {dest!r}")
    folders = [path for path in targets.values() if os.path.isdir(path) and not os.path.islink(path)]
    if folders:
        raise IsADirectoryError(f"export to {dest!r}: {', '.join(folders)} is a folder where a file goes; "
                                "nothing was written. Move it away, or choose another folder.")
    existing = [name for name, path in targets.items() if os.path.lexists(path)]
    if existing and not force:
        raise FileExistsError(f"export to {dest!r}: files of these names are there already: {', '.join(existing)}; "
                              "nothing was written. Choose an empty folder, or pass force=True (--force) to "
                              "replace them.")
    os.makedirs(dest, exist_ok=True)
    written = []
    for name, path in targets.items():
        entry = version.files[name]
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, store.location.open_read(f"{version.folder}/{name}") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != entry.sha256:
                raise CheckpointCorruptError(
                    f"{store.file_url(version, name)} changed while it was copied (its sha256 no longer matches "
                    "the manifest); nothing was left under its name. Verify the directory with `prefect-torch "
                    "verify`, then export again.")
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        written.append(path)
    return written
