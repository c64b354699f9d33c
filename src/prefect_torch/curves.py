"""Training curves as small PNG images: the losses and a score over the epochs of a history, and
the trials of a sweep side by side, ready to embed in a markdown artifact of the Prefect UI.

Drawing needs matplotlib (``pip install 'prefect-torch[plot]'``), imported only when a curve is
drawn; without it every function here returns an empty result and nothing fails. The figures
are drawn on matplotlib's ``Figure`` and Agg canvas, never through ``pyplot``: no window, no
global figure list, so a helper thread may draw while training goes on.

Histories are read as untrusted data (they may come from a ``history.json`` on disk): rows that
are not mappings, and values that are not finite numbers (``None``, NaN, inf, text, flags), are
left out of the curves rather than failing the drawing.

Example
-------
>>> history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "valid_acc": 0.5 + e / 40}
...            for e in range(1, 11)]
>>> images = training_curves(history, current=10, best=9, resumes=[(5, "run crimson-fox, attempt 2")])
>>> sorted(images)                                                  # doctest: +SKIP
['loss', 'valid_acc']
>>> markdown_image(images["loss"], "losses").startswith("![losses](data:image/png;base64,")  # doctest: +SKIP
True
"""
from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .reporting import metric_names_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH, HEIGHT, DPI = 6.4, 3.0, 100  # inches at DPI: 640 x 300 pixels
SWEEP_HEIGHT = 3.6  # 640 x 360: room for the legend of many trials
SWEEP_AXES_RIGHT = 0.62  # the legend of trial names right of the axes
TRAINING_AXES_TOP = 0.83  # the title and the legend above the axes
LOSSES = ("train_loss", "valid_loss")
LOSS_COLOURS = {"train_loss": "#1f77b4", "valid_loss": "#ff7f0e"}  # blue, orange
CURRENT_COLOUR, BEST_COLOUR, RESUME_COLOUR = "#2ca02c", "#d62728", "#9467bd"  # green, red, purple
SWEEP_BEST_COLOUR, SWEEP_OTHER_COLOUR = "#d62728", "#c7c7c7"
SWEEP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SWEEP_LEGEND_TRIALS = len(SWEEP_COLOURS)  # trials named in the legend (after the best); the rest are grey
MAX_LABEL = 30  # characters of a trial name or resume label shown
MARKED_POINTS = 40  # lines of at most this many epochs show a dot per epoch
PALETTE = 64  # colours of the PNG


def curves_available() -> bool:
    """Whether matplotlib can be imported (curves are drawn), as with the ``plot`` extra.

    >>> isinstance(curves_available(), bool)
    True
    """
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return False
    return True


def number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (flags, text, NaN, inf and missing values).

    >>> number(0.5), number(2), number(True), number(float("nan")), number("0.5"), number(None)
    (0.5, 2.0, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def series(history: Sequence[Any], key: str) -> tuple[list[int], list[float]]:
    """The epochs and finite values of column ``key`` in ``history`` (rows that are not mappings
    skipped; a row without a valid ``epoch`` counts as its position, from 1).

    >>> series([{"epoch": 1, "a": 0.5}, {"epoch": 2, "a": None}, "junk", {"a": float("inf")}, {"a": 3}], "a")
    ([1, 5], [0.5, 3.0])
    >>> series([{"a": 1}, {"a": 2}], "a")
    ([1, 2], [1.0, 2.0])
    """
    epochs, values = [], []
    for position, row in enumerate(history, 1):
        if not isinstance(row, Mapping):
            continue
        value = number(row.get(key))
        if value is None:
            continue
        epoch = row.get("epoch")
        epochs.append(epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else position)
        values.append(value)
    return epochs, values


def plottable_history(data: Any) -> list[dict[str, float]]:
    """The numbers of a history read from outside (e.g. a parsed ``history.json``): one dict per
    epoch with its ``epoch`` and finite numeric values only (flags, text, ``batches``, NaN dropped).

    Raises ``ValueError`` naming the problem when ``data`` is not a list of objects.

    >>> plottable_history([{"epoch": 1, "valid_loss": 0.5, "valid_loss_best": True, "batches": [{}]}])
    [{'epoch': 1, 'valid_loss': 0.5}]
    >>> plottable_history({"epoch": 1})
    Traceback (most recent call last):
    ...
    ValueError: a history is a JSON list of epoch objects, not a dict
    """
    if not isinstance(data, list):
        raise ValueError(f"a history is a JSON list of epoch objects, not a {type(data).__name__}")
    rows = []
    for position, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise ValueError(f"epoch {position} of the history is a {type(row).__name__}, not an object")
        kept: dict[str, float] = {}
        for key, value in row.items():
            if isinstance(key, str) and key != "batches" and number(value) is not None:
                kept[key] = value
        rows.append(kept)
    return rows


def score_name(history: Sequence[Any], scoring: str | None = None) -> str | None:
    """The metric of the second plot: ``scoring`` if the history reports it and it is not one of
    the losses of the first plot, else the first reported metric that is not a loss.

    >>> rows = [{"train_loss": 1.0, "valid_loss": 1.0, "valid_acc": 0.5, "valid_f1": 0.4, "dur": 1.0}]
    >>> score_name(rows), score_name(rows, "valid_f1"), score_name(rows, "valid_loss"), score_name(rows[:0])
    ('valid_acc', 'valid_f1', 'valid_acc', None)
    """
    rows = [row for row in history if isinstance(row, Mapping)]
    names = [n for n in metric_names_of(rows) if n != "epoch" and series(rows, n)[0]]
    if scoring is not None and scoring in names and scoring not in LOSSES:
        return scoring
    return next((n for n in names if not n.endswith("loss")), None)


def training_curves(history: Sequence[Mapping[str, Any]], *, current: int | None = None, best: int | None = None,
                    resumes: Sequence[tuple[int, str]] = (), scoring: str | None = None,
                    title: str | None = None) -> dict[str, bytes]:
    """PNG images of a training's history: ``"loss"`` (``train_loss`` and ``valid_loss`` over
    every epoch) and one of the score (named after it, e.g. ``"valid_acc"``).

    Parameters
    ----------
    history : sequence of mappings
        Epoch rows as in a net's ``history`` or its ``history.json`` (``epoch``, ``train_loss``,
        ``valid_loss``, scores...); other columns (``dur``, ``batches``, ``event_*``) are ignored.
    current, best : int or None, default=None
        Epochs to mark (the current checkpoint's, the best one's), each in the legend.
    resumes : sequence of (int, str), default=()
        ``(epoch, label)``: a new flow run or attempt took over after ``epoch``; drawn as a
        dashed vertical line labelled e.g. ``"run crimson-fox, attempt 2"``.
    scoring : str or None, default=None
        The score to plot (see :func:`score_name`); by default the first reported metric that
        is not a loss.
    title : str or None, default=None
        Put before each plot's title, e.g. the experiment's name.

    Returns
    -------
    dict of str to bytes
        The images that have something to show (a loss plot without any loss is left out);
        ``{}`` without matplotlib or without any finite value.

    Examples
    --------
    >>> rows = [{"epoch": 1, "train_loss": 0.9, "valid_loss": float("nan")}, {"epoch": 2, "train_loss": 0.7}]
    >>> sorted(training_curves(rows, current=2)) if curves_available() else ["loss"]
    ['loss']
    >>> training_curves([{"epoch": 1, "dur": 0.1}])
    {}
    """
    if not curves_available():
        return {}
    rows = [row for row in history if isinstance(row, Mapping)]
    prefix = f"{title}: " if title else ""
    images = {}
    losses = {name: series(rows, name) for name in LOSSES}
    losses = {name: points for name, points in losses.items() if points[0]}
    if losses:
        images["loss"] = _draw_training(losses, f"{prefix}losses", "loss", current, best, resumes)
    metric = score_name(rows, scoring)
    if metric is not None:
        images[metric] = _draw_training({metric: series(rows, metric)}, f"{prefix}{metric}", metric,
                                        current, best, resumes)
    return images


def sweep_curves(trials: Mapping[str, Sequence[Mapping[str, Any]]], *, metric: str = "valid_loss",
                 best: str | None = None, lower_is_better: bool | None = None,
                 title: str | None = None) -> bytes | None:
    """One PNG image of ``metric`` over the epochs of every trial of a sweep, a line each; the
    ``best`` trial drawn thick, in red, first in the legend. The legend names the best trial
    and the next :data:`SWEEP_LEGEND_TRIALS` by their best score; more trials are drawn in grey.

    Parameters
    ----------
    trials : mapping of str to sequence of mappings
        Each trial's name and its history (epoch rows, as for :func:`training_curves`).
    metric : str, default="valid_loss"
        The history column drawn.
    best : str or None, default=None
        The name of the best trial.
    lower_is_better : bool or None, default=None
        Orders the legend; ``None``: lower for losses, higher for other scores.
    title : str or None, default=None
        Put before the plot's title, e.g. the sweep's name.

    Returns
    -------
    bytes or None
        The PNG; ``None`` without matplotlib or when no trial has a finite value of ``metric``.

    Examples
    --------
    >>> trials = {"lr=0.1": [{"epoch": 1, "valid_loss": 0.6}, {"epoch": 2, "valid_loss": 0.4}],
    ...           "lr=0.01": [{"epoch": 1, "valid_loss": 0.7}, {"epoch": 2, "valid_loss": 0.65}]}
    >>> png = sweep_curves(trials, best="lr=0.1")
    >>> png is None or png.startswith(b"\\x89PNG")
    True
    >>> sweep_curves({"lr=0.1": []}) is None
    True
    """
    if not curves_available():
        return None
    lines = {name: series(rows, metric) for name, rows in trials.items() if isinstance(rows, Sequence)}
    lines = {name: points for name, points in lines.items() if points[0]}
    if not lines:
        return None
    lower = metric.endswith("loss") if lower_is_better is None else lower_is_better
    ranked = sorted((name for name in lines if name != best),
                    key=lambda name: min(lines[name][1]) if lower else -max(lines[name][1]))
    figure, ax = _figure(SWEEP_HEIGHT, right=SWEEP_AXES_RIGHT)
    many = max(len(epochs) for epochs, _ in lines.values()) > MARKED_POINTS
    handles, labels = [], []
    if best in lines:
        epochs, values = lines[best]
        handles += ax.plot(epochs, values, color=SWEEP_BEST_COLOUR, linewidth=2.6, marker=None if many else "o",
                           markersize=4, zorder=3)
        labels.append(f"best: {_short(best)}")
    for name, colour in zip(ranked, SWEEP_COLOURS):
        epochs, values = lines[name]
        handles += ax.plot(epochs, values, color=colour, linewidth=1.0, marker=None if many else ".",
                           markersize=4, zorder=2)
        labels.append(_short(name))
    grey = ranked[SWEEP_LEGEND_TRIALS:]
    for name in grey:
        epochs, values = lines[name]
        (line,) = ax.plot(epochs, values, color=SWEEP_OTHER_COLOUR, linewidth=0.8, zorder=1)
    if grey:
        handles.append(line)
        labels.append(f"{len(grey)} more trial{'s' if len(grey) > 1 else ''}")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
              borderaxespad=0.0)
    ax.set_ylabel(metric)
    ax.set_title(f"{f'{title}: ' if title else ''}{metric} of {len(lines)} trials", fontsize=10, loc="left")
    _log_scale_if_wide(ax, [v for _, values in lines.values() for v in values])
    _integer_epochs(ax, [e for epochs, _ in lines.values() for e in epochs])
    return _png(figure)


def markdown_image(png: bytes, alt: str) -> str:
    """``png`` as a markdown image with the bytes inline (a ``data:`` URL), which both Prefect UIs
    show in a markdown artifact. Brackets and line breaks of ``alt`` are replaced.

    >>> markdown_image(b"\\x89PNG", "loss [train]")
    '![loss (train)](data:image/png;base64,iVBORw==)'
    """
    text = " ".join(str(alt).split()).replace("[", "(").replace("]", ")")
    return f"![{text}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


# -- drawing -------------------------------------------------------------------------------------------
def _draw_training(lines: Mapping[str, tuple[list[int], list[float]]], title: str, ylabel: str,
                   current: int | None, best: int | None, resumes: Sequence[tuple[int, str]]) -> bytes:
    figure, ax = _figure(HEIGHT, top=TRAINING_AXES_TOP)
    many = max(len(epochs) for epochs, _ in lines.values()) > MARKED_POINTS
    for name, (epochs, values) in lines.items():
        ax.plot(epochs, values, color=LOSS_COLOURS.get(name, "#1f77b4"), linewidth=1.0 if many else 1.4,
                marker=None if many else ".", markersize=5, label=name)
    marked = lines.get("valid_loss") or next(iter(lines.values()))  # marks sit on the validation curve
    for epoch, colour, shape, size, what in ((current, CURRENT_COLOUR, "o", 10, "current"),
                                            (best, BEST_COLOUR, "*", 13, "best")):  # the star on top
        if epoch is not None and epoch in marked[0]:
            value = marked[1][marked[0].index(epoch)]
            ax.plot([epoch], [value], linestyle="none", marker=shape, markersize=size, color=colour,
                    markeredgecolor="white", markeredgewidth=0.8, label=f"{what} (epoch {epoch})", zorder=4)
    for n, (epoch, label) in enumerate(_valid_resumes(resumes)):
        ax.axvline(epoch + 0.5, color=RESUME_COLOUR, linestyle="--", linewidth=1.2, zorder=3,
                   label="resumed" if n == 0 else None)
        ax.annotate(_short(label), xy=(epoch + 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -3),
                    textcoords="offset points", rotation=90, va="top", ha="left", fontsize=7, color=RESUME_COLOUR,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0})
    ax.set_ylabel(ylabel)
    figure.suptitle(title, fontsize=10, x=0.01, y=0.98, ha="left", va="top")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=5, fontsize=7, frameon=False,
              borderaxespad=0.2, handlelength=1.5, columnspacing=1.0)
    if ylabel == "loss":
        _log_scale_if_wide(ax, [v for _, values in lines.values() for v in values])
    _integer_epochs(ax, [e for epochs, _ in lines.values() for e in epochs])
    return _png(figure)


def _figure(height: float, right: float = 0.98, top: float = 0.9) -> tuple[Figure, Axes]:
    """A figure with one axes at fixed margins (in figure fractions; a layout engine would
    triple the cost of a drawing), room left of it for 6-digit tick labels."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH, height), dpi=DPI)
    ax = figure.add_axes((0.1, 0.52 / height, right - 0.1, top - 0.52 / height))  # 0.52 in: ticks, label
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return figure, ax


def _integer_epochs(ax: Axes, epochs: Sequence[int]) -> None:
    """At least two epochs of room on the x axis, so a short history still has whole-epoch ticks."""
    if epochs and max(epochs) - min(epochs) < 2:
        ax.set_xlim(min(epochs) - 1, max(epochs) + 1)


def _log_scale_if_wide(ax: Axes, values: Sequence[float]) -> None:
    """A log scale when positive values span more than two orders of magnitude (an early loss
    spike would flatten the rest of a linear plot)."""
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")


def _valid_resumes(resumes: Sequence[Any]) -> list[tuple[int, str]]:
    found = []
    for item in resumes:
        if isinstance(item, (tuple, list)) and len(item) == 2 and number(item[0]) is not None:
            found.append((int(item[0]), str(item[1])))
    return found


def _short(text: str) -> str:
    """``text`` cut in the middle to :data:`MAX_LABEL` characters: trial names often differ at the end.

    >>> _short("lr=0.03333,module__num_units=30")
    'lr=0.03333,mod…e__num_units=30'
    """
    if len(text) <= MAX_LABEL:
        return text
    head = (MAX_LABEL - 1) // 2
    return text[:head] + "…" + text[len(text) - (MAX_LABEL - 1 - head):]


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image  # a dependency of matplotlib

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    # a palette of PALETTE colours: a third of the bytes of full colour, and the lines look the same
    image = image.quantize(colors=PALETTE, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
