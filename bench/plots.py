"""PNG plots of the saved bench results, for BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

# No display on a bench machine: render straight to files.
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker


def draw(results: Path, out: Path) -> list[Path]:
    """Draw every plot whose results exist; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sweep = results / "sweep.json"
    if sweep.exists():
        written.append(_sweep(json.loads(sweep.read_text()), out / "sweep.png"))
    throughput = results / "throughput.json"
    if throughput.exists():
        data = json.loads(throughput.read_text())
        if data["latency"].get("samples_ms"):
            written.append(_latency(data, out / "latency.png"))
    return written


def _sweep(data: dict[str, Any], path: Path) -> Path:
    sizes = data["sizes"]
    persons = [row["persons"] for row in sizes]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    series = (
        ("first_sweep_s", "mentorflow sweep, first (fills every program)", "o-"),
        ("no_change_sweep_s", "mentorflow sweep, no change", "s-"),
        ("peer_no_change_s", "peer: one SQL statement, CASE over JSON", "^--"),
    )
    for key, label, style in series:
        axes.plot(persons, [row[key] for row in sizes], style, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("persons")
    axes.set_ylabel("seconds")
    axes.set_title(
        f"sweep time, {data['rules']} rules over {data['programs']} programs"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _latency(data: dict[str, Any], path: Path) -> Path:
    latency = data["latency"]
    samples = sorted(latency["samples_ms"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(samples, bins=60)
    left.set_xlabel("produced to membership event readable, ms")
    left.set_ylabel("events")
    left.set_title(f"latency at {latency['rate_per_s']:.0f} events/s")
    shares = [(n + 1) / len(samples) for n in range(len(samples))]
    right.plot(samples, shares)
    right.set_xscale("log")
    # Plain milliseconds: the default labels of a log axis overlap here.
    right.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(ticker.ScalarFormatter())
    right.xaxis.set_minor_formatter(ticker.NullFormatter())
    right.set_xlabel("ms (log)")
    right.set_ylabel("share of events at or below")
    right.set_title(f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms")
    right.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
