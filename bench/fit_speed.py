"""Fit speed: prefect_torch's NeuralNetClassifier against skorch's and against a hand-written loop.

Run from the repository root, in the project's virtualenv::

    python bench/fit_speed.py                   # both cases, 3 interleaved repeats each
    python bench/fit_speed.py --quick           # smoke test: the 1,000-sample case, 1 repeat
    python bench/fit_speed.py --repeat 5 --threads 1 --json bench.json

What is measured
----------------
Three contenders train the same module (``prefect_torch.examples.MyModule``, 10 hidden units),
on the same data (``prefect_torch.examples.make_data``, 10 features), from the same seed, with the
same hyperparameters (SGD, lr=0.5, batch size 128, 10 epochs, ``NLLLoss`` on the log of the
softmax output):

* ``prefect_torch`` -- ``prefect_torch.NeuralNetClassifier(..., verbose=0).fit(X, y)``;
* ``skorch``        -- ``skorch.NeuralNetClassifier(..., verbose=0).fit(X, y)`` (optional: the
  contender is skipped with a note when skorch is not installed; ``pip install -e '.[compare]'``);
* ``hand loop``     -- a plain torch loop doing the same work: the classifier's default split
  (``ValidSplit(5, stratified=True)``, i.e. the first fold of sklearn's ``StratifiedKFold(5)``
  held out for validation), then each epoch the train steps over batches of 128 in order, the
  validation loss over the held-out fold in batches of 128, and the validation accuracy from
  those same forward outputs. It draws one number from torch's global generator per pass, as a
  ``DataLoader`` does, so its dropout masks -- and weights -- can match the nets'.

Two cases on arrays: the README example (1,000 samples x 10 features) and 100,000 x 10; and the
same two sizes handed over as a ``torch.utils.data.TensorDataset`` (the "dataset" cases, skorch#1100:
a ``DataLoader`` fetching one sample at a time). The dataset cases split with ``ValidSplit(5)``
(not stratified: the dataset carries the targets), i.e. the first of sklearn's ``KFold(5)``
folds, in all three contenders; prefect_torch fetches each batch with one gather (``__getitems__``).

The wall time of each contender is ``time.perf_counter()`` around everything that turns the numpy
arrays into a trained module: building the net (or the module and optimizer), splitting the data,
converting it to tensors, and all epochs. One untimed warm-up fit of every contender runs first,
because the first fit in a process pays one-off start-up costs. Then each case runs ``--repeat``
rounds; in each round every contender fits once, in a rotated order, so that machine noise hits
all of them alike. The table shows the best and the median of the rounds; ratios use the best.
A note is printed when a contender's slowest round took more than 1.5x its best one. The batches
are tiny, so torch's intra-op threads barely help, and on a small, shared machine they make the
timings much noisier: ``--threads 1`` gives steadier numbers there.

Targets (from the issues): on the 100k case prefect_torch is at least 2.5x faster than skorch,
and prefect_torch takes at most 1.25x the time of the hand-written loop; on the dataset 100k case
prefect_torch is at least 2x faster than skorch.

Sanity checks, printed after the timings: all contenders reach about the same final validation
accuracy (they do the same work), and prefect_torch and skorch end with identical weights under
the same seed (``torch.equal`` on every parameter), because prefect_torch's tensor batching draws
random numbers exactly like a ``DataLoader``.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import sklearn
import torch
from common import Timing
from sklearn.model_selection import KFold, StratifiedKFold
from torch import nn
from torch.utils.data import TensorDataset

import prefect_torch
from prefect_torch.examples import MyModule, make_data

try:
    import skorch
except ImportError:  # skorch is optional: the "compare" extra
    skorch = None

LR = 0.5
NUM_UNITS = 10
N_FEATURES = 10
BATCH_SIZE = 128
MAX_EPOCHS = 10
SPEEDUP_VS_SKORCH_TARGET = 2.5  # skorch time / prefect_torch time, on the 100k case
DATASET_SPEEDUP_VS_SKORCH_TARGET = 2.0  # the same, on the dataset 100k case
OVERHEAD_VS_HAND_TARGET = 1.25  # prefect_torch time / hand-loop time
SIMILAR_ACC = 0.02  # final validation accuracies this close count as "the same work"
NOISY_SPREAD = 1.5  # slowest / best round above this: the machine was busy, say so

PREFECT, SKORCH, HAND = "prefect_torch", "skorch", "hand loop"


@dataclass(frozen=True)
class Case:
    name: str
    n_samples: int
    dataset: bool = False  # hand X, y over as a TensorDataset instead of arrays


BIG, DATASET_BIG = "100k x 10", "dataset 100k"
CASES = (Case("1k x 10", 1_000), Case(BIG, 100_000),
         Case("dataset 1k", 1_000, dataset=True), Case(DATASET_BIG, 100_000, dataset=True))


@dataclass
class Outcome:
    """What one fit leaves behind besides its time."""

    valid_acc: float
    valid_loss: float
    params: list[torch.Tensor]


@dataclass
class Measurement(Timing):
    contender: str = ""
    valid_acc: float = float("nan")
    valid_loss: float = float("nan")


Fitter = Callable[[np.ndarray, np.ndarray], Outcome]


# -- the contenders -------------------------------------------------------------------------------
def _net_outcome(net: Any) -> Outcome:
    return Outcome(
        valid_acc=float(net.history[-1]["valid_acc"]),
        valid_loss=float(net.history[-1]["valid_loss"]),
        params=[p.detach().clone() for p in net.module_.parameters()],
    )


def _net_kwargs() -> dict[str, Any]:
    # train_split is left at the classifier's default, ValidSplit(5, stratified=True)
    return {"lr": LR, "module__num_units": NUM_UNITS, "module__n_features": N_FEATURES,
            "max_epochs": MAX_EPOCHS, "batch_size": BATCH_SIZE, "verbose": 0}


def fit_prefect_torch(X: np.ndarray, y: np.ndarray) -> Outcome:
    net = prefect_torch.NeuralNetClassifier(MyModule, **_net_kwargs())
    return _net_outcome(net.fit(X, y))


def fit_skorch(X: np.ndarray, y: np.ndarray) -> Outcome:
    assert skorch is not None
    net = skorch.NeuralNetClassifier(MyModule, **_net_kwargs())
    return _net_outcome(net.fit(X, y))


def _tensor_dataset(X: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(X), torch.from_numpy(y))


def fit_prefect_torch_dataset(X: np.ndarray, y: np.ndarray) -> Outcome:
    net = prefect_torch.NeuralNetClassifier(
        MyModule, train_split=prefect_torch.ValidSplit(5), **_net_kwargs())
    return _net_outcome(net.fit(_tensor_dataset(X, y), None))


def fit_skorch_dataset(X: np.ndarray, y: np.ndarray) -> Outcome:
    assert skorch is not None
    net = skorch.NeuralNetClassifier(MyModule, train_split=skorch.dataset.ValidSplit(5), **_net_kwargs())
    return _net_outcome(net.fit(_tensor_dataset(X, y), None))


def _draw_dataloader_seed() -> None:
    """Draw the one number a DataLoader draws per pass (its base seed), keeping the RNG in step."""
    torch.empty((), dtype=torch.int64).random_()


def fit_hand_loop(X: np.ndarray, y: np.ndarray, splitter: Any = StratifiedKFold) -> Outcome:
    """The same work as the nets' ``fit``, written out with nothing but torch."""
    train_idx, valid_idx = next(splitter(5).split(np.zeros(len(y)), y))
    X_all, y_all = torch.from_numpy(X), torch.from_numpy(y)
    X_train, y_train = X_all[torch.from_numpy(train_idx)], y_all[torch.from_numpy(train_idx)]
    X_valid, y_valid = X_all[torch.from_numpy(valid_idx)], y_all[torch.from_numpy(valid_idx)]
    n_train, n_valid = len(train_idx), len(valid_idx)

    module = MyModule(num_units=NUM_UNITS, n_features=N_FEATURES)
    criterion = nn.NLLLoss()
    optimizer = torch.optim.SGD(module.parameters(), lr=LR)
    eps = torch.finfo(torch.float32).eps

    valid_acc = valid_loss = float("nan")
    for _ in range(MAX_EPOCHS):
        _draw_dataloader_seed()
        module.train()
        train_loss = 0.0
        for start in range(0, n_train, BATCH_SIZE):
            xb, yb = X_train[start:start + BATCH_SIZE], y_train[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = criterion(torch.log(module(xb) + eps), yb)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(xb)
        train_loss /= n_train

        _draw_dataloader_seed()
        module.eval()
        outputs, loss_sum = [], 0.0
        with torch.no_grad():
            for start in range(0, n_valid, BATCH_SIZE):
                xb, yb = X_valid[start:start + BATCH_SIZE], y_valid[start:start + BATCH_SIZE]
                out = module(xb)
                loss_sum += criterion(torch.log(out + eps), yb).item() * len(xb)
                outputs.append(out)
        valid_loss = loss_sum / n_valid
        valid_acc = (torch.cat(outputs).argmax(dim=1) == y_valid).double().mean().item()

    params = [p.detach().clone() for p in module.parameters()]
    return Outcome(valid_acc=valid_acc, valid_loss=valid_loss, params=params)


def fit_hand_loop_kfold(X: np.ndarray, y: np.ndarray) -> Outcome:
    """The hand loop with the dataset cases' split (``KFold(5)``'s first fold held out)."""
    return fit_hand_loop(X, y, splitter=KFold)


def contenders(dataset: bool = False) -> dict[str, Fitter]:
    found: dict[str, Fitter] = {PREFECT: fit_prefect_torch_dataset if dataset else fit_prefect_torch}
    if skorch is not None:
        found[SKORCH] = fit_skorch_dataset if dataset else fit_skorch
    found[HAND] = fit_hand_loop_kfold if dataset else fit_hand_loop
    return found


# -- measuring ---------------------------------------------------------------------------------------
def timed_fit(fit: Fitter, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, Outcome]:
    gc.collect()
    torch.manual_seed(seed)
    start = time.perf_counter()
    outcome = fit(X, y)
    return time.perf_counter() - start, outcome


def warm_up(fitters: dict[str, Fitter], seed: int) -> None:
    X, y = make_data(n_samples=1_000, n_features=N_FEATURES)
    for fit in fitters.values():
        timed_fit(fit, X, y, seed)


def run_case(case: Case, fitters: dict[str, Fitter], repeat: int, seed: int
             ) -> tuple[dict[str, Measurement], dict[str, Outcome]]:
    """``repeat`` rounds; each fits every contender once, the order rotated from round to round."""
    X, y = make_data(n_samples=case.n_samples, n_features=N_FEATURES)
    names = list(fitters)
    measurements = {name: Measurement(contender=name) for name in names}
    last: dict[str, Outcome] = {}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, outcome = timed_fit(fitters[name], X, y, seed)
            m = measurements[name]
            m.seconds.append(seconds)
            m.valid_acc, m.valid_loss = outcome.valid_acc, outcome.valid_loss
            last[name] = outcome
    return measurements, last


def same_weights(a: Outcome, b: Outcome) -> bool:
    return len(a.params) == len(b.params) and all(torch.equal(p, q) for p, q in zip(a.params, b.params))


# -- reporting ---------------------------------------------------------------------------------------
def _ratio(num: Measurement | None, den: Measurement | None, attr: str = "best") -> float | None:
    if num is None or den is None:
        return None
    return getattr(num, attr) / getattr(den, attr)


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _yes_no(value: bool | None) -> str:
    return "n/a (skorch skipped)" if value is None else ("yes" if value else "no")


def print_rule(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: only the 1,000-sample case, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds per case (default 3); the best and median are shown")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads(N) (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before every fit")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    cases = [case for case in CASES if case.n_samples <= 1_000] if args.quick else list(CASES)

    fitters = contenders()
    print("fit speed: prefect_torch vs skorch vs a hand-written torch loop")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"prefect_torch {prefect_torch.__version__}, "
          f"skorch {skorch.__version__ if skorch is not None else '-'}, sklearn {sklearn.__version__}")
    print(f"torch threads {torch.get_num_threads()}, seed {args.seed}, {repeat} interleaved round(s) per case")
    print(f"MyModule(num_units={NUM_UNITS}), SGD lr={LR}, batch {BATCH_SIZE}, {MAX_EPOCHS} epochs, "
          "valid = first StratifiedKFold(5) fold (dataset cases: first KFold(5) fold)")
    if skorch is None:
        print("note: skorch is not importable, so it is skipped (pip install -e '.[compare]')")

    warm_up({**fitters, **{f"{name} (dataset)": fit for name, fit in contenders(dataset=True).items()}},
            args.seed)

    results: dict[str, dict[str, Measurement]] = {}
    outcomes: dict[str, dict[str, Outcome]] = {}
    for case in cases:
        results[case.name], outcomes[case.name] = run_case(
            case, contenders(dataset=case.dataset), repeat, args.seed)

    print_rule(f"wall seconds per fit (best and median of {repeat})")
    print(f"{'case':<14}{'contender':<15}{'best s':>9}{'median s':>10}{'valid_acc':>11}{'valid_loss':>12}")
    for case_name, by_name in results.items():
        for m in by_name.values():
            print(f"{case_name:<14}{m.contender:<15}{m.best:>9.3f}{m.median:>10.3f}"
                  f"{m.valid_acc:>11.4f}{m.valid_loss:>12.4f}")
    noisy = [f"{case_name} {m.contender} ({m.worst / m.best:.1f}x)"
             for case_name, by_name in results.items() for m in by_name.values()
             if m.worst > NOISY_SPREAD * m.best]
    if noisy:
        print(f"note: noisy rounds, slowest > {NOISY_SPREAD}x best: {', '.join(noisy)}; "
              "the best is the steadier figure (more --repeat, or --threads 1, steadies it further)")

    print_rule("ratios (best; median in brackets)")
    print(f"{'case':<14}{'skorch / prefect_torch':>26}{'prefect_torch / hand loop':>30}")
    ratios: dict[str, dict[str, float | None]] = {}
    for case_name, by_name in results.items():
        p, s, h = by_name[PREFECT], by_name.get(SKORCH), by_name[HAND]
        ratios[case_name] = {
            "skorch_over_prefect_torch": _ratio(s, p),
            "skorch_over_prefect_torch_median": _ratio(s, p, "median"),
            "prefect_torch_over_hand_loop": _ratio(p, h),
            "prefect_torch_over_hand_loop_median": _ratio(p, h, "median"),
        }
        r = ratios[case_name]
        vs_skorch = (f"{_fmt_ratio(r['skorch_over_prefect_torch'])} "
                     f"({_fmt_ratio(r['skorch_over_prefect_torch_median'])})")
        vs_hand = (f"{_fmt_ratio(r['prefect_torch_over_hand_loop'])} "
                   f"({_fmt_ratio(r['prefect_torch_over_hand_loop_median'])})")
        print(f"{case_name:<14}{vs_skorch:>26}{vs_hand:>30}")

    print_rule("targets (from the issues)")
    targets: list[dict[str, Any]] = []
    for big, target in ((BIG, SPEEDUP_VS_SKORCH_TARGET), (DATASET_BIG, DATASET_SPEEDUP_VS_SKORCH_TARGET)):
        if big in ratios:
            value = ratios[big]["skorch_over_prefect_torch"]
            targets.append({"target": f"{big}: skorch / prefect_torch >= {target}x",
                            "value": value, "pass": None if value is None else value >= target})
    for case_name in results:
        if case_name.startswith("dataset"):
            continue  # the hand loop slices tensors; the dataset cases compare with skorch
        value = ratios[case_name]["prefect_torch_over_hand_loop"]
        targets.append({"target": f"{case_name}: prefect_torch / hand loop <= {OVERHEAD_VS_HAND_TARGET}x",
                        "value": value, "pass": None if value is None else value <= OVERHEAD_VS_HAND_TARGET})
    for t in targets:
        verdict = "SKIP" if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        print(f"{t['target']:<46}{_fmt_ratio(t['value']):>9}  {verdict}")
    if BIG not in ratios:
        print(f"(the {BIG} and {DATASET_BIG} cases were not run: --quick)")

    print_rule("sanity: same work, same result")
    sanity: dict[str, dict[str, Any]] = {}
    for case_name, by_name in results.items():
        accs = {name: m.valid_acc for name, m in by_name.items()}
        spread = max(accs.values()) - min(accs.values())
        last = outcomes[case_name]
        weights = same_weights(last[PREFECT], last[SKORCH]) if SKORCH in last else None
        hand_weights = same_weights(last[PREFECT], last[HAND])
        sanity[case_name] = {"valid_acc": accs, "valid_acc_spread": spread,
                             "similar_valid_acc": spread <= SIMILAR_ACC,
                             "prefect_torch_skorch_identical_weights": weights,
                             "prefect_torch_hand_loop_identical_weights": hand_weights}
        shown = ", ".join(f"{name} {acc:.4f}" for name, acc in accs.items())
        print(f"{case_name}: final valid_acc {shown}; spread {spread:.4f} -> "
              f"similar (<= {SIMILAR_ACC}): {_yes_no(spread <= SIMILAR_ACC)}")
        print(f"{case_name}: identical weights prefect_torch vs skorch: {_yes_no(weights)}"
              f"; prefect_torch vs hand loop (info): {_yes_no(hand_weights)}")

    if args.json:
        payload = {
            "meta": {"python": platform.python_version(), "torch": torch.__version__,
                     "prefect_torch": prefect_torch.__version__,
                     "skorch": skorch.__version__ if skorch is not None else None,
                     "sklearn": sklearn.__version__, "threads": torch.get_num_threads(),
                     "seed": args.seed, "repeat": repeat, "lr": LR, "num_units": NUM_UNITS,
                     "batch_size": BATCH_SIZE, "max_epochs": MAX_EPOCHS, "argv": sys.argv[1:]},
            "results": {case: {name: {**asdict(m), "best": m.best, "median": m.median, "worst": m.worst}
                               for name, m in by_name.items()} for case, by_name in results.items()},
            "ratios": ratios,
            "targets": targets,
            "sanity": sanity,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
