"""Train the README's example classifier with checkpoints, resuming where the last run stopped.

    python flows/train_example.py                    # trains epochs 1-10, a checkpoint after each
    python flows/train_example.py --max-epochs 15    # a re-run continues with epochs 11-15
    prefect-torch checkpoints checkpoints/example    # the committed versions, verified

Kill it at any moment (Ctrl+C, kill -9): the next run resumes from the last committed epoch
and ends with the same weights as an uninterrupted run.
"""
import argparse
import shutil

import torch

from prefect_torch import NeuralNetClassifier, cli
from prefect_torch.callbacks import Checkpoint, LoadInitState
from prefect_torch.examples import MyModule, make_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirname", default="checkpoints/example", help="checkpoint folder or fsspec URL")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="delete the checkpoints first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.dirname, ignore_errors=True)

    torch.manual_seed(0)
    X, y = make_data()
    checkpoint = Checkpoint(monitor=None, dirname=args.dirname)
    resume = LoadInitState(checkpoint, until_max_epochs=True)
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=args.max_epochs, callbacks=[checkpoint, resume])
    net.fit(X, y)
    if resume.loaded_epoch_ == len(net.history):
        print(f"already trained to epoch {resume.loaded_epoch_} in {args.dirname}; raise --max-epochs to go on")
    elif resume.loaded_epoch_:
        print(f"\nresumed after epoch {resume.loaded_epoch_} from {args.dirname}")
    print(f"training accuracy: {net.score(X, y):.4f}\n\ncommitted checkpoints (prefect-torch checkpoints {args.dirname}):")
    cli.main(["checkpoints", args.dirname, "--prefix", ""])


if __name__ == "__main__":
    main()
