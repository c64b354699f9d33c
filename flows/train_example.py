"""The "Saving and Loading" guide's scenario as a Prefect flow: train the README's classifier with
Checkpoint + TrainEndCheckpoint + LoadInitState, each epoch a task run, resuming where the last run
stopped.

    python flows/train_example.py                    # epochs 1-10, a committed checkpoint after each
    python flows/train_example.py                    # again: all 10 epochs are done, nothing to train
    python flows/train_example.py --max-epochs 15 --lr 0.1   # resumes at 11 with the lower lr
    prefect-torch checkpoints checkpoints/example    # the committed versions, verified

Kill it at any moment (Ctrl+C, kill -9): the next run resumes from the last committed epoch and ends
with the same weights as an uninterrupted run. A failing epoch is retried from the last commit
(``task_retries``), a failing flow run once more (``retries=1``). It needs a Prefect API:
``bash scripts/demo.sh`` starts a local server (UI at http://127.0.0.1:4200) when none is configured.
"""
import argparse
import shutil

import torch
from prefect import flow, runtime
from prefect.settings import PREFECT_UI_URL

from prefect_torch import NeuralNetClassifier, cli
from prefect_torch.callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration import fit_in_flow


@flow(name="train-example", retries=1)
def train_example(dirname: str = "checkpoints/example", max_epochs: int = 10, lr: float = 0.5) -> dict:
    """Train (or resume training) the example classifier into ``dirname``; returns the training record."""
    torch.manual_seed(0)
    X, y = make_data()
    cp = Checkpoint(monitor=None, dirname=dirname)
    train_end_cp = TrainEndCheckpoint(dirname=dirname)
    load_state = LoadInitState(cp, until_max_epochs=True)
    net = NeuralNetClassifier(MyModule, lr=lr, max_epochs=max_epochs, callbacks=[cp, train_end_cp, load_state])
    # (with all epochs done, fit_in_flow says so in the run's logs, in these words)
    record = fit_in_flow(net, X, y, experiment="example", task_retries=1,
                         train_more_hint=f"run it with --max-epochs {max_epochs + 5} to train 5 more",
                         data_source="prefect_torch.examples:make_data")  # for the summary's code
    if record["trained_epochs"] and load_state.loaded_epoch_:
        print(f"\nresumed after epoch {load_state.loaded_epoch_} from {dirname}")
    print(f"training accuracy: {net.score(X, y):.4f}")
    ui = PREFECT_UI_URL.value()
    if ui:
        print(f"\nthis run in the Prefect UI:  {ui}/runs/flow-run/{runtime.flow_run.id}\n"
              f"its checkpoints (artifacts):  {ui}/v2/runs/flow-run/{runtime.flow_run.id}?tab=Artifacts")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirname", default="checkpoints/example", help="checkpoint folder or fsspec URL")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.5, help="a changed lr takes effect when resuming")
    parser.add_argument("--fresh", action="store_true", help="delete the checkpoints first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.dirname, ignore_errors=True)
    train_example(args.dirname, args.max_epochs, args.lr)
    print(f"\ncommitted checkpoints (prefect-torch checkpoints {args.dirname}):")
    cli.main(["checkpoints", args.dirname, "--prefix", ""])


if __name__ == "__main__":
    main()
