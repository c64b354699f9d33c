from prefect import flow

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.examples import MyModule, make_data  # the Example's module and data
from prefect_torch.orchestration import fit_in_flow

X, y = make_data()


@flow(retries=1)
def nightly():
    net = NeuralNetClassifier(MyModule, max_epochs=20,
                              callbacks=[Checkpoint(monitor=None, dirname="checkpoints/nightly")])
    return fit_in_flow(net, X, y, experiment="nightly", task_retries=2)


if __name__ == "__main__":
    nightly()
