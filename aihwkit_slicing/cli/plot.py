"""``aihwkit-slicing plot``: redraw a sweep's figure from its results folder, any metric.

::

    aihwkit-slicing plot results
    aihwkit-slicing plot results --metric weight_rms_error --out rms.png

Reads ``results.csv`` and ``sweep.json`` (:func:`aihwkit_slicing.experiments.results.read_sweep`),
prints the summary of the metric and writes the figure of
:func:`aihwkit_slicing.experiments.plotting.plot_sweep`. Kept apart from
:mod:`aihwkit_slicing.cli.main`, which registers it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aihwkit_slicing.cli.parsing import UsageError


def add_plot_parser(commands: argparse._SubParsersAction,  # pylint: disable=protected-access
                    parser: argparse.ArgumentParser) -> None:
    """Add the ``plot`` subcommand to ``commands`` (errors go through ``parser``)."""
    plot = commands.add_parser(
        "plot", help="redraw a sweep's figure from its results folder, for any metric",
        description="Read a sweep's results folder (results.csv and sweep.json), print "
        "the summary of a metric and draw it against time and per table.")
    plot.error = parser.error  # type: ignore[method-assign]
    plot.add_argument("folder", type=Path, metavar="RESULTS_DIR",
                      help="the folder a sweep wrote (its --out)")
    plot.add_argument("--metric", default=None,
                      help="the metric to draw (default: the task's main metric; the weight "
                      "errors weight_rms_error and weight_max_error are always there)")
    plot.add_argument("--out", type=Path, default=None, metavar="FILE",
                      help="the image to write (default: RESULTS_DIR/<metric>_vs_time.png; "
                      "the suffix picks the format: .png, .pdf, .svg)")


def run_plot_command(args: argparse.Namespace) -> int:
    """``aihwkit-slicing plot``: summary and figure of one metric of a results folder."""
    from aihwkit_slicing.experiments.plotting import plot_sweep
    from aihwkit_slicing.experiments.results import read_sweep

    try:
        result = read_sweep(args.folder)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        metric = result.check_metric(args.metric)
    except ValueError as error:
        raise UsageError(f"--metric {args.metric}: {error}") from None
    out = args.out or args.folder / f"{metric}_vs_time.png"
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"--out must be a file in an existing folder, got {str(out)!r}")
    formats = (".png", ".pdf", ".svg")
    if out.suffix.lower() not in formats:
        raise UsageError(f"--out {out}: the suffix must be one of {', '.join(formats)}, got "
                         f"{out.suffix or 'none'!r}")
    print(result.format_summary(metric=metric))
    try:
        figure = plot_sweep(result, out, metric=metric)
    except OSError as error:
        raise UsageError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    import matplotlib.pyplot as plt

    plt.close(figure)
    print(f"\nwrote {out}")
    return 0
