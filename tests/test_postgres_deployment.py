"""The shipped deployment on a Prefect server whose database is PostgreSQL (what deploy/cluster/
sets up for a team), and the consistency of the shipped cluster files.

The slow test deploys deploy/prefect.yaml (a copy, changed as test_deployment.py's ``deploy_copy``
changes it) to a second real Prefect server started on a private Postgres cluster
(postgres_server.py), runs it once through a process worker, and checks the run three ways: the
API (state, the flow's record), the checkpoint files on disk, and the rows in Postgres.
Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import configparser
import hashlib
import inspect
import pathlib
import re
import sys

import pytest
import yaml

from postgres_server import PostgresServer, postgres_server, prefect_server_on_postgres  # noqa: F401
from prefect_server import PrefectServer
from test_deployment import (
    FLOW_NAME,
    PREFECT_YAML,
    REPO,
    SLOW_TIMEOUT,
    WORKER_ENV,
    deploy_copy,
    read_manifest,
    record_of,
    wait_for,
)

CLUSTER = REPO / "deploy" / "cluster"
CLUSTER_ENV = CLUSTER / "cluster.env.example"
UNITS = ("prefect-server.service", "prefect-worker.service", "seaweedfs-s3.service")
SWEEP_YAML = REPO / "deploy" / "sweep.yaml"
SWEEP_FLOW = REPO / "flows" / "sweep_example.py"
CLUSTER_SETTINGS = {  # what the README's "Run on several machines" asks the team to set
    "PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_API_HOST",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "PREFECT_TORCH_CHECKPOINTS",
    "PREFECT_TORCH_DASK_ADDRESS", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
}


# -- a deployment run on a server on Postgres --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_deployment_run_on_a_server_on_postgres(postgres_server: PostgresServer,  # noqa: F811
                                                prefect_server_on_postgres: PrefectServer,  # noqa: F811
                                                tmp_path: pathlib.Path):
    """One run of the shipped deployment through a process worker: Completed, its record and
    checkpoints are those of ``epochs`` epochs, and the flow run, its deployment and its epoch
    task runs are rows of the Postgres database, in the states the API reports."""
    server, db = prefect_server_on_postgres, postgres_server
    assert server.db_url == db.url
    epochs = 3
    checkpoint_dir = tmp_path / "checkpoints" / "pg"
    pool = "pg-training"
    with server.work_pool(pool, env=WORKER_ENV) as worker:
        deployment = deploy_copy(server, tmp_path, pool=pool, name="nightly-pg", schedule=None,
                                 parameters={"checkpoint_dir": str(checkpoint_dir), "max_epochs": epochs,
                                             "experiment": "pg", "data_params": {"n_samples": 300}})
        with server.client() as client:
            flow_run = client.create_flow_run_from_deployment(deployment.id)

        def final():
            with server.client() as client:
                run = client.read_flow_run(flow_run.id)
            return run if run.state and run.state.is_final() else None

        run = wait_for(final, 300, "the deployment run to end", worker, interval=1)
        assert run.state.is_completed(), f"{run.state.type.value}: {run.state.message}\n{worker.log_tail(80)}"

        def epoch_task_runs():  # the task-run recorder writes them asynchronously, after the flow
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

            with server.client() as client:
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            done = {t.name: t.state.type.value for t in tasks if t.state and t.state.is_final()}
            return done if len(done) == epochs else None

        api_tasks = wait_for(epoch_task_runs, 60, f"{epochs} finished task runs", worker)

    # the API: the flow's record (persisted JSON result)
    record = record_of(run)
    assert record["flow_run_id"] == str(run.id) and record["attempt"] == 1
    assert record["experiment"] == "pg" and record["epoch"] == epochs and record["trained_epochs"] == [1, epochs]
    current = record["current"]
    assert current["epoch"] == current["version"] == epochs  # one commit per epoch
    assert api_tasks == {f"epoch-{n}": "COMPLETED" for n in range(1, epochs + 1)}

    # the disk: the manifest names that version, whose folder holds the weights it records
    manifest = read_manifest(checkpoint_dir)
    assert manifest["current"] == current["version"]
    (version,) = [v for v in manifest["versions"] if v["id"] == current["version"]]
    folder = checkpoint_dir / version["folder"]
    assert current["uri"] == str(folder)
    committed = {name: (entry["size"], entry["sha256"]) for name, entry in version["files"].items()}
    on_disk = {name: ((folder / name).stat().st_size, hashlib.sha256((folder / name).read_bytes()).hexdigest())
               for name in committed}
    assert on_disk == committed and "params.pt" in on_disk
    assert current["sha256"] == on_disk["params.pt"][1]  # the record's hash is the weights file's
    (claim,) = manifest["claims"]
    assert claim["flow_run_id"] == str(run.id) and claim["finished"]

    # Postgres: the server's tables hold the same run, in the same states
    assert db.psql("select count(*) from alembic_version") == "1"  # Prefect's migrations ran there
    assert db.psql("select d.name, p.name from deployment d join work_queue q on q.id = d.work_queue_id "
                   f"join work_pool p on p.id = q.work_pool_id where d.id = '{deployment.id}'") == f"nightly-pg|{pool}"
    assert db.psql(f"select state_type, state_name, run_count, deployment_id from flow_run where id = '{run.id}'") \
        == f"COMPLETED|Completed|1|{deployment.id}"
    assert db.psql(f"select f.name from flow f join flow_run r on r.flow_id = f.id where r.id = '{run.id}'") == FLOW_NAME
    rows = db.psql(f"select name, state_type from task_run where flow_run_id = '{run.id}' order by name")
    assert dict(line.split("|") for line in rows.splitlines()) == api_tasks
    states = db.psql(f"select type from flow_run_state where flow_run_id = '{run.id}' order by timestamp")
    assert states.splitlines()[-1] == "COMPLETED" and "RUNNING" in states.splitlines()


# -- the shipped cluster files (fast) ----------------------------------------------------------------


def read_unit(path: pathlib.Path) -> configparser.ConfigParser:
    """A systemd unit file as INI (keys keep their case; a repeated key keeps its last value)."""
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text(), source=str(path))
    return unit


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an environment file (systemd's EnvironmentFile= format)."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: not KEY=VALUE: {line!r}"
            pairs[key] = value
    return pairs


def test_cluster_files_are_consistent():
    """The systemd units parse, start what the README says, read the environment file, and every
    variable they use is in its template; the template names every setting, with placeholders
    instead of real addresses or secrets; the lost-run automation fits the heartbeat setting."""
    settings = read_env_file(CLUSTER_ENV)
    assert CLUSTER_SETTINGS <= settings.keys()
    assert settings["PREFECT_TORCH_CHECKPOINTS"].startswith("s3://")
    assert settings["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    for name in ("PREFECT_API_URL", "PREFECT_UI_API_URL", "AWS_ENDPOINT_URL"):
        assert re.fullmatch(r"http://<[a-z0-9-]+>:\d+(/api)?", settings[name]), f"{name}: {settings[name]}"

    units = {name: read_unit(CLUSTER / name) for name in UNITS}
    commands = {}
    for name, unit in units.items():
        service = unit["Service"]
        assert unit["Unit"]["Description"] and unit["Install"]["WantedBy"] == "multi-user.target", name
        assert service["EnvironmentFile"].lstrip("-") == "/etc/prefect-torch/cluster.env", name
        assert service["User"] and service["Restart"], name
        commands[name] = service["ExecStart"]
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", service["ExecStart"]))
        assert used <= settings.keys(), f"{name} uses {sorted(used - settings.keys())}, not in {CLUSTER_ENV.name}"
    assert " server start" in commands["prefect-server.service"]
    assert "worker start --pool training --type process" in commands["prefect-worker.service"]
    worker = units["prefect-worker.service"]["Service"]  # runs in the repository, with its venv
    assert worker["ExecStart"].startswith(worker["WorkingDirectory"] + "/.venv/bin/prefect ")
    assert commands["seaweedfs-s3.service"].split()[0].endswith("/weed") and " -s3" in commands["seaweedfs-s3.service"]
    assert "postgresql.service" in units["prefect-server.service"]["Unit"].get("After", "")

    sql = (CLUSTER / "postgres.sql").read_text().lower()
    assert "create role prefect" in sql and "create database prefect owner prefect" in sql
    assert re.search(r"@<[a-z0-9-]+>:5432/prefect$", settings["PREFECT_API_DATABASE_CONNECTION_URL"])

    # the automation that marks the runs of a lost machine Crashed: valid for the server, and its
    # window longer than the heartbeat interval of any worker's runs (else it crashes live runs)
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings.models.flows import FlowsSettings

    automation = yaml.safe_load((CLUSTER / "crash-lost-runs.yaml").read_text())
    AutomationCore.model_validate(automation)  # what `prefect automation create --from-file` sends
    trigger, (action,) = automation["trigger"], automation["actions"]
    assert trigger["posture"] == "Proactive" and trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
            "prefect.flow-run.Crashed"} <= set(trigger["expect"])
    assert trigger["within"] >= 3 * int(settings["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    # a worker started without cluster.env: Prefect's default interval (180 s in 3.9)
    assert trigger["within"] > FlowsSettings.model_fields["heartbeat_frequency"].default
    assert action["type"] == "change-flow-run-state" and action["state"] == "CRASHED"


def test_sweep_deployment_file():
    """deploy/sweep.yaml: one deployment of the sweep flow on the pool ``training``, no active
    schedule, one run at a time, run from the repository like deploy/prefect.yaml, checkpoints
    where the workers' environment says; once flows/sweep_example.py exists, its entrypoint is
    the flow ``sweep-nets`` and takes every parameter given."""
    config = yaml.safe_load(SWEEP_YAML.read_text())
    shipped = yaml.safe_load(PREFECT_YAML.read_text())
    assert config["build"] == shipped["build"] and config["pull"] == shipped["pull"]
    (deployment,) = config["deployments"]
    assert deployment["name"] == "nightly-sweep"
    assert deployment["entrypoint"] == "flows/sweep_example.py:sweep_example"
    assert deployment["work_pool"]["name"] == "training"
    assert not any(schedule.get("active", True) for schedule in deployment.get("schedules") or [])
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert "resume-on-crash" in deployment["tags"]  # deploy/resume-crashed-runs.yaml re-runs it
    parameters = deployment["parameters"]
    assert {"sweep", "param_grid", "max_epochs"} <= parameters.keys()
    assert "root" not in parameters  # each worker's $PREFECT_TORCH_CHECKPOINTS/sweeps/<sweep> (S3)

    if not SWEEP_FLOW.exists():
        pytest.skip(f"{SWEEP_FLOW.relative_to(REPO)} is not written yet")
    path, _, function = deployment["entrypoint"].partition(":")
    sys.path.insert(0, str(REPO / pathlib.Path(path).parent))
    try:
        module = __import__(pathlib.Path(path).stem)
    finally:
        sys.path.remove(str(REPO / pathlib.Path(path).parent))
    flow = getattr(module, function)
    assert flow.name == "sweep-nets"
    accepted = inspect.signature(flow.fn).parameters
    assert parameters.keys() <= accepted.keys(), f"not parameters of {function}: {parameters.keys() - accepted.keys()}"
