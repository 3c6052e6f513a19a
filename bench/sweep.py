"""--sweep (latency and CPU against load) and --cost-curve (CPU and RSS against N): one table and one plot each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import RunResult, ms_axis

TARGET_P99_MS, TARGET_P999_MS = 5.0, 20.0


def half_max_rates(max_rate: float, count: int) -> list[float]:
    """`count` rates evenly spaced up to half of `max_rate` (the last one is half of it)."""
    return [round(max_rate / 2 * (i + 1) / count) for i in range(count)]


def _stage(run: RunResult, name: str, q: str) -> Any:
    row = run.stages.get(name)
    return "-" if not row or row.get(q) is None else row[q]


def sweep_table(runs: Sequence[RunResult]) -> str:
    """A Markdown table: one row per rate, latency, CPU and the stages that explain the tail."""
    head = ("| events/s | deliveries/s | read p50 | read p99 | read p99.9 | read max (ms) | arrived p50 | arrived p99 "
            "| arrived p99.9 | arrived→read p99 | streamer CPU µs/delivery | streamer core busy | load generator core busy "
            "| publish→sequenced p99 | sequenced→read p99 | read→written p99 | loop lag p99 / max | GC pause max | lost, dup "
            "| load avg | streamer waiting for a core |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for run in runs:
        lat, arr = run.latency_ms, run.arrival_latency_ms or {}
        lines.append(
            f"| {run.rate:,.0f} | {run.deliveries_per_s:,.0f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | {lat['max']} "
            f"| {arr.get('p50', '-')} | {arr.get('p99', '-')} | {arr.get('p999', '-')} | {_stage(run, 'arrived_to_read', 'p99')} "
            f"| {run.streamer_cpu_us_per_delivery} | {run.streamer_cpu_share} | {run.loadgen_cpu_share} "
            f"| {_stage(run, 'published_to_sequenced', 'p99')} | {_stage(run, 'sequenced_to_read', 'p99')} "
            f"| {_stage(run, 'read_to_written', 'p99')} | {_stage(run, 'loop_lag', 'p99')} / {_stage(run, 'loop_lag', 'max')} "
            f"| {_stage(run, 'gc_pause', 'max')} | {run.lost}, {run.duplicated} | {run.load_average} | {run.streamer_runqueue_wait} |"
        )
    return "\n".join(lines)


def cost_table(runs: Sequence[RunResult]) -> str:
    """A Markdown table: one row per N (fresh stack each), CPU per delivery and RSS per stream."""
    head = ("| N streams | K keys | deliveries/s | streamer CPU µs/delivery | RSS KiB/stream idle | loaded "
            "| connect s | p50 | p99 | p99.9 (ms) | lost, dup | load avg |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for run in runs:
        lat = run.latency_ms
        lines.append(
            f"| {run.connections:,} | {run.keys:,} | {run.deliveries_per_s:,.0f} | {run.streamer_cpu_us_per_delivery} "
            f"| {run.rss_idle_kib} | {run.rss_loaded_kib} | {run.connect_s:.2f} | {lat['p50']} | {lat['p99']} | {lat['p999']} "
            f"| {run.lost}, {run.duplicated} | {run.load_average} |"
        )
    return "\n".join(lines)


def _figure(title: str) -> tuple[Any, Any, Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    fig.suptitle(title, fontsize=9)
    return plt, fig, left, right


def plot_sweep(path: str, runs: Sequence[RunResult], title: str) -> None:
    """p50/p99/p99.9 and CPU per delivery against deliveries/s, with the 5 ms / 20 ms targets drawn."""
    plt, fig, lat_ax, cpu_ax = _figure(title)
    xs = [run.deliveries_per_s for run in runs]
    for key, label, colour in (("p50", "p50", "#4477aa"), ("p99", "p99", "#ee6677"), ("p999", "p99.9", "#aa3377")):
        lat_ax.plot(xs, [max(run.latency_ms[key], 0.01) for run in runs], marker="o", label=f"{label} read", color=colour)
        if all(run.arrival_latency_ms for run in runs):
            lat_ax.plot(xs, [max((run.arrival_latency_ms or {})[key], 0.01) for run in runs], marker="x", linestyle="--",
                        label=f"{label} arrived", color=colour)
    lat_ax.axhline(TARGET_P99_MS, color="#ee6677", linestyle=":", linewidth=1)
    lat_ax.axhline(TARGET_P999_MS, color="#aa3377", linestyle=":", linewidth=1)
    lat_ax.set(xlabel="deliveries/s", ylabel="publish → client ms (log)", yscale="log",
               title="latency: read (solid), arrived (dashed); dotted: targets")
    ms_axis(lat_ax.yaxis)
    lat_ax.legend(fontsize=7, ncol=2)
    lat_ax.grid(True, which="both", alpha=0.3)
    cpu_ax.plot(xs, [run.streamer_cpu_us_per_delivery or 0 for run in runs], marker="o", color="#228833")
    cpu_ax.set(xlabel="deliveries/s", ylabel="µs", title="streamer CPU per delivery")
    cpu_ax.set_ylim(bottom=0)
    cpu_ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_cost(path: str, runs: Sequence[RunResult], title: str) -> None:
    """CPU per delivery and RSS per stream against N."""
    plt, fig, cpu_ax, rss_ax = _figure(title)
    ns = [run.connections for run in runs]
    cpu_ax.plot(ns, [run.streamer_cpu_us_per_delivery or 0 for run in runs], marker="o", color="#228833")
    cpu_ax.set(xlabel="streams N (K = N/10)", ylabel="µs", title="streamer CPU per delivery")
    rss_ax.plot(ns, [run.rss_idle_kib or 0 for run in runs], marker="o", label="idle", color="#4477aa")
    rss_ax.plot(ns, [run.rss_loaded_kib or 0 for run in runs], marker="s", label="loaded", color="#ee6677")
    rss_ax.set(xlabel="streams N (K = N/10)", ylabel="KiB", title="streamer RSS per stream")
    rss_ax.legend(fontsize=8)
    for ax in (cpu_ax, rss_ax):
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
