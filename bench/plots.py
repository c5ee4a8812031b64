"""Benchmark the grid plots training and evaluation write (`jaxedit.viz.plots.small_multiples`).

    python bench/plots.py                                   # 4, 12 and 40 panels, 5 rounds
    python bench/plots.py --panels 40 --rounds 3 --json bench/results/plots.json

Each grid is what a training run writes as its loss plot: one panel per attribute, three loss
curves of 200 steps each, a figure title and the legend below. Timed: `small_multiples`, from the
series to the PNG on disk, against a baseline drawn in the same run: the same grid laid out by
matplotlib's constrained layout, with titles placed by matplotlib (text measured and moved at draw
time). Reported per panel count: median CPU seconds (user + system of this process, less sensitive
than wall time to other jobs on a shared machine) of each, and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxedit.io import atomic_write_text
from jaxedit.viz.plots import PALETTE, small_multiples

TITLE = "transformer losses (synthetic, paper losses)"


def loss_panels(count: int) -> dict:
    steps = np.arange(200)
    return {
        f"attribute {i}": {
            "class": (steps, np.exp(-steps / (40 + i))),
            "attribute": (steps, 0.5 * np.exp(-steps / 30) + 0.01 * i),
            "recon": (steps, steps / 2000),
        }
        for i in range(count)
    }


def constrained_layout_grid(panels: dict, path: Path, panel_size=(320, 220)) -> None:
    """The baseline: the same grid, laid out by matplotlib's constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    count = len(panels)
    columns = min(count, max(1, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(columns * panel_size[0] / 100, rows * panel_size[1] / 100), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    colours = [tuple(c / 255 for c in rgb) for rgb in PALETTE]
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        if index >= count:
            axes.set_axis_off()
            continue
        name, series = list(panels.items())[index]
        for colour, (xs, ys) in zip(colours, series.values()):
            axes.plot(xs, ys, color=colour, linewidth=1.6)
        axes.grid(True, color="0.88", linewidth=0.6)
        axes.tick_params(labelsize=7)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.set_ylabel("loss", fontsize=8)
    figure.suptitle(TITLE, fontsize=11)
    names = list(next(iter(panels.values())))
    handles = [Line2D([], [], color=colour, linewidth=1.6) for colour in colours[: len(names)]]
    figure.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=8)
    figure.savefig(path, format="png", dpi=100)


def cpu_seconds(work) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def run(count: int, rounds: int, folder: Path) -> dict:
    panels = loss_panels(count)
    ours, baseline = [], []
    for round_ in range(rounds + 1):  # round 0 warms fonts and imports up
        mine = cpu_seconds(
            lambda: small_multiples(panels, folder / "ours.png", xlabel="step", ylabel="loss", title=TITLE)
        )
        theirs = cpu_seconds(lambda: constrained_layout_grid(panels, folder / "baseline.png"))
        if round_:
            ours.append(mine)
            baseline.append(theirs)
    return {
        "panels": count,
        "rounds": rounds,
        "small_multiples_cpu_s": statistics.median(ours),
        "constrained_layout_cpu_s": statistics.median(baseline),
        "speedup": statistics.median(baseline) / statistics.median(ours),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| panels | small_multiples (CPU s) | constrained layout (CPU s) | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['panels']} | {r['small_multiples_cpu_s']:.2f} | {r['constrained_layout_cpu_s']:.2f} "
            f"| {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", default="4,12,40", help="comma-separated panel counts (default 4,12,40)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per count (default 5)")
    parser.add_argument("--json", default="bench/results/plots.json", help="where to write the results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = [run(int(count), args.rounds, Path(folder)) for count in args.panels.split(",")]
    report = {
        "benchmark": "plots",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "command": "python bench/plots.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "results": results,
    }
    print(table(results))
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
