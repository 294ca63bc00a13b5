"""Plots of sweep results (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

if TYPE_CHECKING:
    from aihwkit_slicing.results import SweepResult


def plot_metric_vs_time(
    result: "SweepResult", path: Union[str, Path, None] = None, ax: Any = None,
    title: Optional[str] = None,
) -> Any:
    """The main metric against inference time (log axis), one line per setting.

    A line is a table (with its noise model and compensation when several are
    swept); the band is mean +- standard deviation over repeats; the dotted line is the
    floating-point model. Saves a PNG to ``path`` if given. Returns the axes.
    """
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = result.summary()
    noise_models = {r["noise_model"] for r in rows}
    compensations = {r["compensation"] for r in rows}
    lines: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        label = f"{row['table']} ({row['n_devices']} dev)"
        if len(noise_models) > 1:
            label += f", {row['noise_model']}"
        if len(compensations) > 1:
            label += ", comp. " + ("on" if row["compensation"] else "off")
        lines.setdefault(label, []).append(row)
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in lines.items():
        points.sort(key=lambda r: r["t_inference"])
        t = [max(p["t_inference"], 1e-1) for p in points]
        mean = [p["value_mean"] for p in points]
        std = [p["value_std"] for p in points]
        (line,) = ax.plot(t, mean, marker="o", label=label)
        ax.fill_between(t, [m - s for m, s in zip(mean, std)],
                        [m + s for m, s in zip(mean, std)], color=line.get_color(), alpha=0.2)
    reference = result.reference.get(result.metric)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle=":", label="floating point")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel(result.metric)
    ax.set_title(title or f"{result.task}: {result.metric} under drift")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if own_figure:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
    return ax
