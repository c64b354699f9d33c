"""``storage_block=`` with prefect-aws's blocks (AwsCredentials, MinIOCredentials, S3Bucket) and
the plain Secret: train_flow on a real Prefect server into a real S3 server (SeaweedFS), the
mapping to s3fs's options, where an S3Bucket puts a checkpoint_dir, the errors, and the secret
key never showing in the flow's result, its logs, its artifacts or the checkpoint files."""
from __future__ import annotations

import json
import sys
import time
import traceback
from uuid import UUID, uuid4

import pytest
import torch

from prefect_torch.callbacks import Checkpoint
from prefect_torch.examples import make_data, make_net
from prefect_torch.orchestration.storage import Storage, in_bucket, resolve_storage, s3fs_options

prefect_aws = pytest.importorskip("prefect_aws", reason="the aws extra: pip install 'prefect-torch[aws]'")
from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket  # noqa: E402
from prefect_aws.client_parameters import AwsClientParameters  # noqa: E402

N_SAMPLES = 200
FLOW = {"net_factory": "prefect_torch.examples:make_net", "data": "prefect_torch.examples:make_data",
        "max_epochs": 2, "data_params": {"n_samples": N_SAMPLES}}


def unique(name: str) -> str:
    return f"{name}-{uuid4().hex[:8]}"


# -- 1. prefect-aws's fields as s3fs's options (no server) ----------------------------------------
def test_aws_credentials_map_to_s3fs_options(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-")
    creds = AwsCredentials(aws_access_key_id="AKIA1", aws_secret_access_key="s3cr3t", aws_session_token="tok",
                           profile_name="team", region_name="eu-west-1",
                           aws_client_parameters=AwsClientParameters(
                               endpoint_url="http://s3.internal:8333", use_ssl=False, api_version="2006-03-01",
                               verify_cert_path=bundle, config={"retries": {"max_attempts": 5}}))
    assert s3fs_options("aws-credentials/x", creds) == {
        "key": "AKIA1", "secret": "s3cr3t", "token": "tok", "profile": "team",
        "endpoint_url": "http://s3.internal:8333", "use_ssl": False,
        "config_kwargs": {"retries": {"max_attempts": 5}},
        "client_kwargs": {"region_name": "eu-west-1", "api_version": "2006-03-01", "verify": str(bundle)}}
    # empty fields are left out (botocore reads the environment); verify=False and unsigned requests
    bare = AwsCredentials(aws_client_parameters=AwsClientParameters(verify=False,
                                                                    config={"signature_version": "unsigned"}))
    assert s3fs_options("aws-credentials/x", bare) == {"anon": True, "client_kwargs": {"verify": False}}
    assert s3fs_options("aws-credentials/x", AwsCredentials()) == {}


def test_minio_credentials_map_to_s3fs_options():
    creds = MinIOCredentials(minio_root_user="minio", minio_root_password="pa55word", region_name="us-east-1",
                             aws_client_parameters=AwsClientParameters(endpoint_url="http://127.0.0.1:9000"))
    assert s3fs_options("minio-credentials/x", creds) == {
        "key": "minio", "secret": "pa55word", "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "us-east-1"}}


def test_an_assumed_role_is_refused_with_the_profile_way_instead():
    creds = AwsCredentials(assume_role_arn="arn:aws:iam::123456789012:role/Train")
    with pytest.raises(ValueError, match=r"assumes the role 'arn:aws:iam::123456789012:role/Train'.*profile_name"):
        s3fs_options("aws-credentials/x", creds)


def test_where_an_s3_bucket_puts_a_checkpoint_dir():
    name = "s3-bucket/b"
    assert in_bucket(name, "ml", "runs", "nightly") == "s3://ml/runs/nightly"
    assert in_bucket(name, "ml", "/runs/", "a/b/") == "s3://ml/runs/a/b"
    assert in_bucket(name, "ml", "", "nightly") == "s3://ml/nightly"
    assert in_bucket(name, "ml", "runs", ".") == "s3://ml/runs"
    assert in_bucket(name, "ml", "runs", "s3://ml/runs/x") == "s3://ml/runs/x"  # inside the folder: as given
    assert in_bucket(name, "ml", "runs", "s3://ml/runs") == "s3://ml/runs"
    for outside in ("s3://other/runs/x", "s3://ml/runs2/x", "s3://ml/x", "s3://ml/runs/../x"):
        with pytest.raises(ValueError, match=rf"checkpoint_dir='{outside}' is outside the bucket folder "
                                             r"'s3://ml/runs' of storage_block='s3-bucket/b'; give checkpoint_dir "
                                             r"relative to that folder"):
            in_bucket(name, "ml", "runs", outside)
    for elsewhere in ("/data/x", "../x", "a/../../x", "file:///data/x", "gs://b/x"):
        with pytest.raises(ValueError, match=r"is not a relative path, and storage_block='s3-bucket/b' places "
                                             r"checkpoints in 's3://ml/runs'"):
            in_bucket(name, "ml", "runs", elsewhere)
    for bucket, folder in (("", "runs"), ("ml/runs", ""), ("s3://ml", ""), ("ml", "a/../../b")):
        with pytest.raises(ValueError, match=rf"storage_block='s3-bucket/b' has bucket_name='{bucket}' and "
                                             r"bucket_folder='.*'; give it a plain bucket name"):
            in_bucket(name, bucket, folder, "nightly")


def test_storage_repr_masks_the_credentials():
    storage = Storage("s3://ml/a", {"key": "AKIA1", "secret": "s3cr3t", "endpoint_url": "http://s3:8333"})
    assert "s3cr3t" not in repr(storage) and "AKIA1" not in repr(storage) and "http://s3:8333" in repr(storage)
    assert storage.options["secret"] == "s3cr3t"


def test_block_names_that_cannot_hold_credentials_say_what_to_name(monkeypatch):
    for name in ("json/opts", "string/opts"):
        with pytest.raises(ValueError, match=rf"storage_block='{name}': blocks of type '\w+' cannot hold "
                                             r"storage credentials; name a Secret .*'aws-credentials/NAME'"):
            resolve_storage(name, "s3://b/x")
    with pytest.raises(ValueError, match=r"'aws-credentials/' is not a block's name"):
        resolve_storage("aws-credentials/", "s3://b/x")


def test_without_prefect_aws_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_aws", None)  # `import prefect_aws` raises ImportError
    for name in ("aws-credentials/c", "minio-credentials/c", "s3-bucket/c"):
        with pytest.raises(ImportError, match=rf"storage_block='{name}' is a prefect-aws block, and prefect-aws "
                                              r"is not installed where the flow runs: pip install "
                                              r"'prefect-torch\[aws\]'"):
            resolve_storage(name, "s3://b/x")


# -- 2. train_flow with each block, on the real servers --------------------------------------------
def plain_weights(max_epochs: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return make_net(max_epochs=max_epochs, verbose=0).fit(*make_data(N_SAMPLES)).module_.state_dict()


def loaded_weights(url: str, s3_server) -> dict[str, torch.Tensor]:
    net = make_net(verbose=0).initialize()
    net.load_params(checkpoint=Checkpoint(dirname=url, storage_options=s3_server.storage_options()))
    return net.module_.state_dict()


def run_logged(**params):
    """train_flow with its logs sent to the server; ``(record, log messages)``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from prefect_torch.orchestration import train_flow

    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: True}):
        torch.manual_seed(0)
        record = train_flow(**FLOW, **params)
        APILogWorker.drain_all()
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(record["flow_run_id"])]))
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:  # logs reach the server a moment after the drain
            logs = client.read_logs(log_filter=flt)
            if sum(log.name == "prefect_torch.epochs" for log in logs) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    return record, [log.message for log in logs]


def assert_secret_nowhere(secret: str, record: dict, messages: list[str], url: str, s3_server) -> None:
    """Not in the flow's result, its logs, its run's parameters, its artifacts, nor any file
    under the checkpoint directory."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    assert secret not in json.dumps(record)
    assert any("epoch" in m for m in messages) and not [m for m in messages if secret in m]
    flow_run_id = UUID(record["flow_run_id"])
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert secret not in json.dumps(run.parameters) and secret not in str(run.state)
    assert len(artifacts) >= 3  # the checkpoints table, the summary, the progress
    assert not [a.key for a in artifacts if secret in a.model_dump_json()]
    fs = s3_server.filesystem()
    files = fs.find(url.removeprefix("s3://"))
    assert any(f.endswith("/params.pt") for f in files)
    assert not [f for f in files if secret.encode() in fs.cat_file(f)]


def assert_trained_into(url: str, record: dict, s3_server) -> None:
    assert record["checkpoint_dir"].rstrip("/") == url and record["trained_epochs"] == [1, 2]
    fs = s3_server.filesystem()
    manifest = json.loads(fs.cat_file(f"{url.removeprefix('s3://')}/manifest.json"))
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2] and manifest["current"] == 2
    assert record["current"]["uri"].startswith(url + "/")
    expected, loaded = plain_weights(2), loaded_weights(url, s3_server)
    assert expected.keys() == loaded.keys() and all(torch.equal(expected[k], loaded[k]) for k in expected)


def endpoint(s3_server) -> AwsClientParameters:
    return AwsClientParameters(endpoint_url=s3_server.endpoint_url)


def test_train_flow_with_aws_credentials(prefect_server, s3_server):
    name = unique("aws")
    AwsCredentials(aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
                   aws_client_parameters=endpoint(s3_server)).save(name)
    url = s3_server.url(unique("blocks/aws"))
    record, messages = run_logged(checkpoint_dir=url, experiment=unique("aws"),
                                  storage_block=f"aws-credentials/{name}")
    assert_trained_into(url, record, s3_server)
    assert_secret_nowhere(s3_server.secret_key, record, messages, url, s3_server)


def test_train_flow_with_minio_credentials(prefect_server, s3_server):
    name = unique("minio")
    MinIOCredentials(minio_root_user=s3_server.access_key, minio_root_password=s3_server.secret_key,
                     aws_client_parameters=endpoint(s3_server)).save(name)
    url = s3_server.url(unique("blocks/minio"))
    record, messages = run_logged(checkpoint_dir=url, experiment=unique("minio"),
                                  storage_block=f"minio-credentials/{name}")
    assert_trained_into(url, record, s3_server)
    assert_secret_nowhere(s3_server.secret_key, record, messages, url, s3_server)


def test_train_flow_with_an_s3_bucket_places_a_relative_dir_in_its_folder(prefect_server, s3_server):
    creds, bucket = unique("bucket-creds"), unique("bucket")
    credentials = MinIOCredentials(minio_root_user=s3_server.access_key, minio_root_password=s3_server.secret_key,
                                   aws_client_parameters=endpoint(s3_server))
    credentials.save(creds)  # a block of its own, referenced by the bucket (as the UI makes them)
    folder = unique("blocks/folder")
    S3Bucket(bucket_name=s3_server.bucket, bucket_folder=folder,
             credentials=MinIOCredentials.load(creds)).save(bucket)
    record, messages = run_logged(checkpoint_dir="nightly", experiment=unique("bucket"),
                                  storage_block=f"s3-bucket/{bucket}")
    url = s3_server.url(f"{folder}/nightly")
    assert_trained_into(url, record, s3_server)
    assert_secret_nowhere(s3_server.secret_key, record, messages, url, s3_server)


def test_the_nightly_flow_passes_its_storage_block(prefect_server, s3_server, monkeypatch):
    import pathlib

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parents[1] / "flows"))
    from scheduled_training import scheduled_training

    bucket, folder = unique("nightly-bucket"), unique("blocks/nightly")
    S3Bucket(bucket_name=s3_server.bucket, bucket_folder=folder,
             credentials=AwsCredentials(aws_access_key_id=s3_server.access_key,
                                        aws_secret_access_key=s3_server.secret_key,
                                        aws_client_parameters=endpoint(s3_server))).save(bucket)
    torch.manual_seed(0)
    record = scheduled_training(experiment=unique("nightly"), checkpoint_dir="nightly", max_epochs=2,
                                data_params={"n_samples": N_SAMPLES}, net_params={"verbose": 0},
                                storage_block=f"s3-bucket/{bucket}")
    assert_trained_into(s3_server.url(f"{folder}/nightly"), record, s3_server)


def test_a_plain_secret_name_still_works(prefect_server, s3_server):
    from prefect.blocks.system import Secret

    from prefect_torch.orchestration import train_flow

    name = unique("options")
    Secret(value=s3_server.storage_options()).save(name)
    url = s3_server.url(unique("blocks/secret"))
    torch.manual_seed(0)
    assert_trained_into(url, train_flow(**FLOW, checkpoint_dir=url, storage_block=name, net_params={"verbose": 0}),
                        s3_server)
    assert resolve_storage(f"secret/{name}", url) == (url, s3_server.storage_options())  # the slug too


# -- 3. errors, on the real server -----------------------------------------------------------------
def test_a_missing_block_names_type_and_name(prefect_server):
    with pytest.raises(ValueError, match=r"storage_block='aws-credentials/nope': the Prefect server has no "
                                         r"'aws-credentials' block named 'nope'; create it"):
        resolve_storage("aws-credentials/nope", "s3://b/x")
    creds = unique("creds")
    AwsCredentials(aws_access_key_id="AKIA1").save(creds)
    with pytest.raises(ValueError, match=rf"storage_block='{creds}': the Prefect server has no 'secret' block "
                                         rf"named '{creds}' \(a block of another type is named "
                                         rf"'<block-type>/{creds}', e.g. 'aws-credentials/{creds}'\)"):
        resolve_storage(creds, "s3://b/x")  # a plain name is a Secret's


def test_a_block_that_does_not_validate_names_the_field_not_its_values(prefect_server, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-")
    creds = AwsCredentials(aws_access_key_id="AKIA1", aws_secret_access_key="s3cr3t-never-shown",
                           aws_client_parameters=AwsClientParameters(verify=True, verify_cert_path=bundle))
    name, bucket = unique("invalid"), unique("invalid-bucket")
    creds.save(name)
    S3Bucket(bucket_name="ml", credentials=creds).save(bucket)
    bundle.unlink()  # the CA bundle the block names is not on this machine
    for block, cls, field in ((f"aws-credentials/{name}", "AwsCredentials", r"aws_client_parameters\.verify_cert_path"),
                              (f"s3-bucket/{bucket}", "S3Bucket", "credentials")):  # prefect-aws says no more
        with pytest.raises(ValueError, match=rf"storage_block='{block}' does not load as a {cls} here: "
                                             rf"{field}: .*Correct the block") as e:
            resolve_storage(block, "s3://ml/x")
        assert "s3cr3t-never-shown" not in "".join(traceback.format_exception(e.value))


def test_a_block_of_another_type_is_refused(prefect_server):
    from prefect_aws.secrets_manager import AwsSecret

    name = unique("aws-secret")  # AWS Secrets Manager's: credentials to reach a secret, not storage options
    AwsSecret(aws_credentials=AwsCredentials(aws_access_key_id="AKIA1"), secret_name="x").save(name)
    with pytest.raises(ValueError, match=rf"storage_block='aws-secret/{name}': blocks of type 'aws-secret' cannot "
                                         r"hold storage credentials"):
        resolve_storage(f"aws-secret/{name}", "s3://b/x")
    with pytest.raises(ValueError, match=rf"no 'aws-credentials' block named '{name}'"):
        resolve_storage(f"aws-credentials/{name}", "s3://b/x")  # an AwsSecret by that name is not one


def test_conflicting_s3_bucket_and_checkpoint_dir_fail_the_flow_before_training(prefect_server, s3_server):
    from prefect_torch.orchestration import train_flow

    bucket = unique("conflict")
    S3Bucket(bucket_name="ml", bucket_folder="runs", credentials=AwsCredentials(aws_access_key_id="AKIA1")).save(bucket)
    with pytest.raises(ValueError, match=rf"checkpoint_dir='s3://other/x' is outside the bucket folder 's3://ml/runs' "
                                         rf"of storage_block='s3-bucket/{bucket}'; give checkpoint_dir relative"):
        train_flow(**FLOW, checkpoint_dir="s3://other/x", storage_block=f"s3-bucket/{bucket}")
    creds = unique("creds")
    AwsCredentials(aws_access_key_id="AKIA1").save(creds)
    with pytest.raises(ValueError, match=rf"storage_block='aws-credentials/{creds}' holds S3 credentials, but "
                                         r"checkpoint_dir='runs/x' is not an s3:// URL"):
        resolve_storage(f"aws-credentials/{creds}", "runs/x")


# -- 4. a sweep whose root an S3Bucket places, its trials reading the block on Dask workers ---------
@pytest.mark.slow
def test_sweep_with_an_s3_bucket_puts_its_trials_in_the_bucket_folder(prefect_server, s3_server):
    from distributed import LocalCluster

    from test_sweep import run_sweep

    bucket, folder, sweep = unique("sweep-bucket"), unique("blocks/sweeps"), unique("grid")
    S3Bucket(bucket_name=s3_server.bucket, bucket_folder=folder,
             credentials=AwsCredentials(aws_access_key_id=s3_server.access_key,
                                        aws_secret_access_key=s3_server.secret_key,
                                        aws_client_parameters=endpoint(s3_server))).save(bucket)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        state = run_sweep(cluster.scheduler_address, {"lr": [0.1]}, sweep, max_epochs=2,
                          storage_block=f"s3-bucket/{bucket}")
    assert state.is_completed(), state
    result = state.result()
    root = s3_server.url(f"{folder}/{sweep}")
    assert result["sweep"] == sweep and result["root"] == root
    (row,) = result["trials"]
    assert (row["state"], row["checkpoints"]) == ("Completed", f"{root}/lr=0.1")
    manifest = json.loads(s3_server.filesystem().cat_file(f"{root.removeprefix('s3://')}/lr=0.1/manifest.json"))
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2]
    assert s3_server.secret_key not in json.dumps(result)
