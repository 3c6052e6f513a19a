"""The per-stage breakdown of a run, from the streamer's `timings` (streamer/timings.py) before and after it.

    published ─▶ sequenced ─▶ read by the streamer ─▶ written ─▶ arrived ─▶ read by the client
       (broker in)      (broker out + bus)       (streamer's turn)  (loopback)  (load generator's turn)

Each stage is a distribution of its own (p50/p99/p99.9/max), not a split of one
event's time: percentiles do not add up. The streamer's stages count each event
once per key; `arrived_to_read` (the client's kernel timestamp of a read → the load
generator reading it, bench/kerneltime.py) counts each delivery, from the load
generator, not the streamer. Written → arrived is not measured: the written time
is not in the event. The last lines, publish → arrived and publish → client read,
are end to end per delivery: the server's latency, and what the load generator saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamer.timings import STAGES, diff_counts, quantiles_ms

LABELS = {
    "published_to_sequenced": "publish → sequenced (broker in)",
    "sequenced_to_read": "sequenced → streamer read (broker out + bus)",
    "read_to_written": "streamer read → written",
    "loop_lag": "streamer loop lag (10 ms timer)",
    "gc_pause": "streamer GC pause",
    "arrived_to_read": "client kernel arrived → read (per delivery)",
}


def _delta(after: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    counts = diff_counts(after.get("counts_us", {}), before.get("counts_us", {}))
    return {"count": sum(counts.values()), **quantiles_ms(counts)}


def breakdown(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """{stage: {count, p50, p99, p999, max}} of what happened between two stats snapshots ({} if none)."""
    old, new = before.get("timings"), after.get("timings")
    if not new:
        return {}  # a streamer without timings (an older tree)
    old = old or {}
    result = {name: _delta(new["stages"][name], old.get("stages", {}).get(name, {})) for name in STAGES}
    result["loop_lag"] = _delta(new["loop_lag"], old.get("loop_lag", {}))
    result["gc_pause"] = _delta(new["gc_pause"], old.get("gc_pause", {}))
    gens_before = old.get("gc_pause", {}).get("collections_by_generation", [0, 0, 0])
    result["gc_pause"]["collections_by_generation"] = [
        a - b for a, b in zip(new["gc_pause"]["collections_by_generation"], gens_before)
    ]
    return result


def table(stages: Mapping[str, Any], end_to_end: Mapping[str, float], arrived: Mapping[str, float] | None = None) -> str:
    """The breakdown as aligned lines, with the end-to-end lines (publish → arrived, → client read) last."""
    width = max(len(label) for label in LABELS.values())
    lines = [f"{'stage':<{width}}  {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>8}  count (ms)"]
    for name, label in LABELS.items():
        row = stages.get(name)
        if row is None:
            continue
        cells = " ".join(f"{'-' if row[q] is None else row[q]:>8}" for q in ("p50", "p99", "p999", "max"))
        lines.append(f"{label:<{width}}  {cells}  {row['count']:,}")
    if arrived:
        cells = " ".join(f"{arrived[q]:>8}" for q in ("p50", "p99", "p999", "max"))
        lines.append(f"{'publish → arrived (client kernel)':<{width}}  {cells}")
    cells = " ".join(f"{end_to_end[q]:>8}" for q in ("p50", "p99", "p999", "max"))
    lines.append(f"{'publish → client read':<{width}}  {cells}")
    return "\n".join(lines)
