"""Train the README's example classifier and print its epoch table.

    python flows/train_example.py
"""
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.examples import MyModule, make_data


def main() -> None:
    torch.manual_seed(0)
    X, y = make_data()
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=10)
    net.fit(X, y)
    accuracy = net.score(X, y)
    print(f"\ntraining accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
