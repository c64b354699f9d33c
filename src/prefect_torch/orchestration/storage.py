"""Storage blocks: where a flow's checkpoints go and with which credentials.

``train_flow`` and ``sweep_flow`` take ``storage_block=``, the name of a Prefect block document
on the server, and read from it the fsspec storage options of their checkpoint directory. Blocks
are named the way Prefect names them, ``<block-type>/<name>``:

============================  ===============================================================
``"NAME"``, ``"secret/NAME"``  a ``Secret`` holding fsspec's storage options as a JSON object
``"aws-credentials/NAME"``     prefect-aws's ``AwsCredentials``
``"minio-credentials/NAME"``   prefect-aws's ``MinIOCredentials``
``"s3-bucket/NAME"``           prefect-aws's ``S3Bucket``: its ``credentials`` (one of the two
                               above), and its bucket as the place of the checkpoints
============================  ===============================================================

The prefect-aws blocks need the ``aws`` extra (``pip install 'prefect-torch[aws]'``). Their
fields map to s3fs's options: the access key id and secret (``minio_root_user`` and
``minio_root_password`` for MinIO) to ``key`` and ``secret``, ``aws_session_token`` to
``token``, ``profile_name`` to ``profile``, ``region_name`` to ``client_kwargs.region_name``,
and ``aws_client_parameters``' ``endpoint_url``, ``use_ssl``, ``verify`` (or
``verify_cert_path``), ``api_version`` and ``config`` to s3fs's ``endpoint_url``, ``use_ssl``,
``client_kwargs.verify``, ``client_kwargs.api_version`` and ``config_kwargs``.

With an ``S3Bucket``, a relative ``checkpoint_dir`` is placed in the bucket's folder:
``checkpoint_dir="nightly"`` with ``bucket_name="ml"``, ``bucket_folder="runs"`` is
``s3://ml/runs/nightly``. An ``s3://`` URL inside that folder is taken as it is; any other
directory (another bucket or folder, a local path) is refused, naming both.

Example (a server with the blocks, prefect-aws installed)::

    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters
    from prefect_torch.orchestration import train_flow

    creds = AwsCredentials(aws_access_key_id="AKIA...", aws_secret_access_key="...",
                           aws_client_parameters=AwsClientParameters(endpoint_url="http://s3.internal:8333"))
    creds.save("training", overwrite=True)
    S3Bucket(bucket_name="ml", bucket_folder="runs", credentials=creds).save("checkpoints", overwrite=True)
    train_flow("prefect_torch.examples:make_net", "prefect_torch.examples:make_data",
               "nightly", storage_block="s3-bucket/checkpoints")       # into s3://ml/runs/nightly
"""
from __future__ import annotations

import json
import os
import posixpath
from typing import Any, NamedTuple

from ..checkpoint.redact import masked

SECRET = "secret"
AWS_BLOCKS = {"aws-credentials": "AwsCredentials", "minio-credentials": "MinIOCredentials", "s3-bucket": "S3Bucket"}
S3_SCHEMES = ("s3://", "s3a://")
NAMING = ("name a Secret of fsspec storage options ('NAME' or 'secret/NAME'), or a prefect-aws block as "
          "'aws-credentials/NAME', 'minio-credentials/NAME' or 's3-bucket/NAME'")


class Storage(NamedTuple):
    """A checkpoint directory and its fsspec storage options (masked in the repr).

    >>> Storage("s3://ml/runs/a", {"key": "AKIA123", "secret": "s3cr3t"})
    Storage(checkpoint_dir='s3://ml/runs/a', options={'key': '***', 'secret': '***'})
    """

    checkpoint_dir: str
    options: dict[str, Any]

    def __repr__(self) -> str:
        return f"Storage(checkpoint_dir={self.checkpoint_dir!r}, options={masked(self.options)!r})"


def resolve_storage(block: str | None, checkpoint_dir: str) -> Storage:
    """The checkpoint directory and storage options that ``storage_block=block`` gives
    ``checkpoint_dir`` (see the module's docstring): unchanged without a block.

    Parameters
    ----------
    block : str or None
        A block document's name, ``"<block-type>/<name>"`` or a ``Secret``'s plain name.
    checkpoint_dir : str
        The directory the flow was given; relative to the bucket folder for an ``S3Bucket``.

    Returns
    -------
    Storage
        ``(checkpoint_dir, options)``.

    Examples
    --------
    >>> resolve_storage(None, "runs/a")
    Storage(checkpoint_dir='runs/a', options={})
    """
    if not block:
        return Storage(checkpoint_dir, {})
    kind, loaded = load_block(block)
    options = options_of(block, kind, loaded)
    if kind == "s3-bucket":
        return Storage(in_bucket(block, loaded.bucket_name, loaded.bucket_folder, checkpoint_dir), options)
    if kind != SECRET and not str(checkpoint_dir).startswith(S3_SCHEMES):
        raise ValueError(f"storage_block={block!r} holds S3 credentials, but checkpoint_dir={checkpoint_dir!r} "
                         "is not an s3:// URL; write it as s3://<bucket>/<folder>, or name an 's3-bucket/NAME' "
                         "block to place a relative checkpoint_dir in its bucket")
    return Storage(checkpoint_dir, options)


def storage_options_from(block: str | None) -> dict[str, Any]:
    """The fsspec storage options that the block named ``block`` holds (see the module's
    docstring); none without a block, so fsspec reads the environment.

    >>> storage_options_from(None)
    {}
    """
    if not block:
        return {}
    return options_of(block, *load_block(block))


def options_of(name: str, kind: str, block: Any) -> dict[str, Any]:
    """The storage options of a block that :func:`load_block` loaded."""
    if kind == SECRET:
        return secret_options(name, block)
    return s3fs_options(name, block.credentials if kind == "s3-bucket" else block)


def load_block(name: str) -> tuple[str, Any]:
    """``(block type slug, block)`` for the block document named ``name``, with errors that say
    what to name instead, or what to install."""
    kind, sep, document = name.partition("/")
    if not sep:
        kind, document = SECRET, name
    if not kind or not document:
        raise ValueError(f"storage_block={name!r} is not a block's name; {NAMING}")
    if kind == SECRET:
        from prefect.blocks.system import Secret

        cls: Any = Secret
    elif kind in AWS_BLOCKS:
        try:
            import prefect_aws
        except ImportError:
            raise ImportError(f"storage_block={name!r} is a prefect-aws block, and prefect-aws is not installed "
                              "where the flow runs: pip install 'prefect-torch[aws]'") from None
        cls = getattr(prefect_aws, AWS_BLOCKS[kind])
    else:
        raise ValueError(f"storage_block={name!r}: blocks of type {kind!r} cannot hold storage credentials; "
                         f"{NAMING}")
    from prefect.exceptions import ObjectNotFound
    from pydantic import ValidationError

    try:
        return kind, cls.load(document)
    except (ValueError, RuntimeError) as error:
        if isinstance(error.__cause__, ObjectNotFound):
            other = (f" (a block of another type is named '<block-type>/{document}', e.g. "
                     f"'aws-credentials/{document}')" if not sep else "")
            raise ValueError(f"storage_block={name!r}: the Prefect server has no {kind!r} block named "
                             f"{document!r}{other}; create it (deploy/README.md, 'Storage credentials') or "
                             f"see the blocks there with `prefect block ls`") from None
        invalid = next((e for e in (error, error.__cause__) if isinstance(e, ValidationError)), None)
        if invalid is not None:  # named by field, without the values: they may hold the secret
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in invalid.errors(include_url=False, include_context=False, include_input=False))
            raise ValueError(f"storage_block={name!r} does not load as a {cls.__name__} here: {fields}. Correct "
                             "the block (in the UI, or save it again)") from None
        raise


def secret_options(name: str, secret: Any) -> dict[str, Any]:
    """The JSON object a ``Secret`` block holds, checked."""
    value = secret.get()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise ValueError(f"the Secret block {name!r} does not hold a JSON object; store the storage options as "
                         "one, e.g. {\"key\": \"...\", \"secret\": \"...\", \"endpoint_url\": "
                         "\"http://s3.internal:8333\"}, or name a prefect-aws block ('aws-credentials/NAME')")
    return value


def s3fs_options(name: str, credentials: Any) -> dict[str, Any]:
    """s3fs's storage options from prefect-aws's ``AwsCredentials`` or ``MinIOCredentials``.

    Fields left empty are left out, so s3fs (botocore) takes them from the environment.
    """
    if hasattr(credentials, "minio_root_user"):
        password = credentials.minio_root_password
        found = {"key": credentials.minio_root_user, "secret": password.get_secret_value() if password else None}
    else:
        if credentials.assume_role_arn:
            raise ValueError(f"storage_block={name!r} assumes the role {credentials.assume_role_arn!r}, which s3fs "
                             "cannot refresh during a long training; put the role in an AWS profile "
                             "(role_arn and source_profile in ~/.aws/config on the workers) and set the block's "
                             "profile_name instead")
        secret = credentials.aws_secret_access_key
        found = {"key": credentials.aws_access_key_id, "secret": secret.get_secret_value() if secret else None,
                 "token": credentials.aws_session_token, "profile": credentials.profile_name}
    params = credentials.aws_client_parameters
    verify = params.verify_cert_path or params.verify
    client_kwargs = {"region_name": credentials.region_name, "api_version": params.api_version,
                     "verify": os.fspath(verify) if isinstance(verify, os.PathLike) else verify}
    options = {k: v for k, v in found.items() if v is not None}
    if params.endpoint_url:
        options["endpoint_url"] = params.endpoint_url
    if not params.use_ssl:
        options["use_ssl"] = False
    config = dict(params.config or {})
    if config.get("signature_version") == "unsigned":  # botocore's UNSIGNED: s3fs's anonymous access
        del config["signature_version"]
        options["anon"] = True
    if config:
        options["config_kwargs"] = config
    client_kwargs = {k: v for k, v in client_kwargs.items() if v is not None}
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def in_bucket(name: str, bucket: str, folder: str, checkpoint_dir: str) -> str:
    """``checkpoint_dir`` placed in ``s3://<bucket>/<folder>`` (an S3Bucket block's); refused,
    naming both, where it points elsewhere.

    >>> in_bucket("s3-bucket/b", "ml", "runs/", "nightly/a")
    's3://ml/runs/nightly/a'
    >>> in_bucket("s3-bucket/b", "ml", "", "s3://ml/x")
    's3://ml/x'
    """
    folder = (folder or "").strip("/")
    if not bucket or "/" in bucket or "://" in bucket or ".." in folder.split("/"):
        raise ValueError(f"storage_block={name!r} has bucket_name={bucket!r} and bucket_folder={folder!r}; give it "
                         "a plain bucket name and a folder without '..' (e.g. 'ml' and 'checkpoints')")
    base = "/".join(part for part in (f"s3://{bucket}", folder) if part)
    text = str(checkpoint_dir)
    if text.startswith(S3_SCHEMES):
        scheme, path = text.split("://", 1)
        url = f"s3://{posixpath.normpath(path)}"
        if (url == base or url.startswith(base + "/")) and ".." not in path.split("/"):
            return text
        raise ValueError(f"checkpoint_dir={text!r} is outside the bucket folder {base!r} of storage_block={name!r}; "
                         f"give checkpoint_dir relative to that folder (e.g. 'nightly' for {base}/nightly), a URL "
                         "under it, or name a credentials block ('aws-credentials/NAME') to write elsewhere")
    relative = posixpath.normpath(text.replace(os.sep, "/")) if text else "."
    if "://" in text or posixpath.isabs(relative) or os.path.isabs(text) or relative.split("/")[0] == "..":
        raise ValueError(f"checkpoint_dir={text!r} is not a relative path, and storage_block={name!r} places "
                         f"checkpoints in {base!r}; give a path relative to it (e.g. 'nightly' for "
                         f"{base}/nightly), or no s3-bucket block to write to {text!r}")
    return base if relative == "." else f"{base}/{relative}"
