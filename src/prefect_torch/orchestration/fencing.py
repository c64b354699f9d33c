"""One live training per experiment: who may claim a checkpoint directory, and when to give up.

Before its first epoch a training run claims the directory (see
:meth:`prefect_torch.checkpoint.CheckpointStore.claim`); the manifest then names its flow run
and attempt (``run_count``). The rules, checked under the directory's lock:

- an older attempt of the same flow run never takes over from a newer one (Prefect may start a
  crashed run twice: the older one stops, without committing);
- another flow run's claim blocks only while that run is alive: not finished, not in a final
  state in Prefect, and, on this host, its process still exists;
- after ``max_resumes`` resumed attempts in a row that started from the same checkpoint and
  never finished (a crash loop), the next one refuses to start.
"""
from __future__ import annotations

import logging
import os
import platform
from typing import Any, Callable
from uuid import UUID

from prefect.client.orchestration import get_client

from ..checkpoint import CheckpointConflictError, Manifest

log = logging.getLogger("prefect_torch.orchestration")
_FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


class ResumeLimitError(RuntimeError):
    """An experiment's runs keep failing from the same checkpoint; automatic resumes stop.

    Raised by :func:`~prefect_torch.orchestration.fit_in_flow` before training when
    ``max_resumes`` attempts in a row started from the current checkpoint and never finished;
    the message names those flow runs. Run again with a higher ``max_resumes`` once the cause
    is fixed. Epoch tasks are not retried on it.

    >>> issubclass(ResumeLimitError, RuntimeError)
    True
    """


def claim_check(label: dict[str, Any], max_resumes: int,
                is_alive: Callable[[dict[str, Any]], str | None] | None = None) -> Callable[[Manifest], None]:
    """The check :meth:`CheckpointStore.claim` runs for ``label`` (a run's
    :attr:`~.run.TrainingRun.label`; see the module's rules)."""
    is_alive = is_alive or claimant_alive

    def check(manifest: Manifest) -> None:
        holder = manifest.claims[-1] if manifest.claims else None
        if holder is not None and not holder.get("finished"):
            if holder.get("flow_run_id") == label["flow_run_id"]:
                if holder.get("run_count", 0) > label["run_count"]:
                    raise CheckpointConflictError(
                        f"experiment {label['experiment']!r}: attempt {label['run_count']} of flow run "
                        f"{label['flow_run_name']!r} stops: attempt {holder['run_count']} of the same run "
                        "already took over its checkpoints (Prefect started this run twice). Nothing was "
                        "committed by this attempt.")
            else:
                alive = is_alive(holder)
                if alive:
                    raise CheckpointConflictError(
                        f"experiment {label['experiment']!r} is being trained by {alive}; two runs must not "
                        "write the same checkpoints. Wait for that run to end (a deployment with "
                        "concurrency_limit 1 queues runs for you), cancel it, or give this run another "
                        "experiment/checkpoint directory.")
        stuck = _attempts_without_progress(manifest)
        # the very first attempt of an experiment is a start, not a resume
        resumes = len(stuck) - (1 if stuck and len(stuck) == len(manifest.claims) else 0)
        if resumes >= max_resumes:
            runs = ", ".join(sorted({str(c.get("flow_run_name") or c.get("flow_run_id")) for c in stuck}))
            raise ResumeLimitError(
                f"experiment {label['experiment']!r}: {len(stuck)} attempts in a row started from epoch "
                f"{manifest.current_epoch} and never finished (flow runs {runs}); it looks like a crash loop, "
                f"so it is not resumed again (max_resumes={max_resumes}). Read those runs' logs, fix the "
                "cause, then run again with a higher max_resumes.")

    return check


def mark_taken_over(before: Manifest, label: dict[str, Any]) -> str | None:
    """After ``label``'s run claimed a directory (``before``: the manifest as it was), mark the
    flow run it took over from **Crashed** in Prefect when that run's process is gone from
    this host but Prefect still shows it unfinished (a SIGKILL, a lost machine's restart):
    the UI then stops showing it Running, and says who took over. Returns the id of the run
    marked, if any; a failing API only logs a warning."""
    holder = before.claims[-1] if before.claims else None
    if (holder is None or holder.get("finished") or not holder.get("flow_run_id")
            or holder.get("flow_run_id") == label["flow_run_id"]
            or holder.get("host") != platform.node() or _process_exists(holder.get("pid"))):
        return None
    from prefect.states import Crashed

    run_id = str(holder["flow_run_id"])
    message = (f"the process of this flow run (pid {holder.get('pid')} on {holder.get('host')}) is gone; flow run "
               f"{label['flow_run_name']!r} ({label['flow_run_id']}) took over experiment "
               f"{label['experiment']!r} from its last commit (epoch {before.current_epoch})")
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
            if (run.state is not None and run.state.is_final()) or run.run_count > holder.get("run_count", 0):
                return None  # it ended, or a newer attempt of it runs: nothing to correct
            client.set_flow_run_state(UUID(run_id), Crashed(message=message), force=True)
    except Exception as error:  # another server, gone, or no id: the manifest still tells the story
        log.warning("could not mark flow run %s Crashed: %s: %s", run_id, type(error).__name__, error)
        return None
    log.warning("flow run %s (%s) is marked Crashed: %s", holder.get("flow_run_name"), run_id, message)
    return run_id


def newer_attempt(manifest: Manifest | None, label: dict[str, Any]) -> int | None:
    """The ``run_count`` of a newer attempt of ``label``'s flow run that holds the directory, if any."""
    holder = manifest.writer if manifest is not None else {}
    if holder.get("flow_run_id") == label["flow_run_id"] and holder.get("run_count", 0) > label["run_count"]:
        return holder["run_count"]
    return None


def _attempts_without_progress(manifest: Manifest) -> list[dict[str, Any]]:
    """The newest claims, in a row, that began at the current epoch and never finished."""
    stuck = []
    for claim in reversed(manifest.claims):
        if claim.get("finished") or claim.get("epoch") != manifest.current_epoch:
            break
        stuck.append(claim)
    return stuck


def claimant_alive(claim: dict[str, Any]) -> str | None:
    """Who holds ``claim`` if they may still be training, else ``None``."""
    if claim.get("host") == platform.node() and not _process_exists(claim.get("pid")):
        return None
    run_id = claim.get("flow_run_id")
    if run_id:
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
        except Exception:  # another server, or gone: only the process check above can tell
            run = None
        if run is not None:
            state = run.state.type.value if run.state else "UNKNOWN"
            if state in _FINAL_STATES or run.run_count > claim.get("run_count", 0):
                return None
            return f"flow run {run.name!r} ({run_id}, attempt {claim.get('run_count')}, state {state})"
    return f"process {claim.get('pid')} on host {claim.get('host')}"


def _process_exists(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
