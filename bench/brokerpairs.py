"""Interleaved before/after pairs of the paced broker, one harness for both trees.

    python -m bench.brokerpairs --before DIR [--after DIR] [--transport tcp] [--rate 1000] [--duration 8] [--pairs 6] [--floor]

Each pair starts a fresh broker of each tree (`git archive main | tar -x -C DIR` for
the before; the after defaults to this tree), alternating which goes first (AB, BA,
...), pinned and reniced as `--broker-only --pin --priority -10` does, and prints one
JSON line per pair (µs of CPU per event of each, publish → SUB p50/p99 ms, their
ratio, the load average) and the median ratio. `--floor` runs the floor before each pair.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.brokeronly import run_broker, run_floor
from bench.procstat import set_priority
from bench.stack import ROOT, broker_only_stack

PRIORITY = -10
KEYS = 100


def one(root: Path, transport: str, rate: float, duration_s: float) -> dict[str, Any]:
    """A fresh broker of `root`, paced at `rate`: its run_broker result."""
    stack = broker_only_stack(False, root, transport)
    if stack.broker_pid:
        set_priority(stack.broker_pid, PRIORITY)
    try:
        return run_broker(stack, KEYS, duration_s, rate, True)
    finally:
        stack.stop()


def pairs(before: Path, after: Path, transport: str, rate: float, duration_s: float, count: int, floor: bool) -> list[dict[str, Any]]:
    """`count` pairs, alternating the order; one row per pair, printed as it comes."""
    rows: list[dict[str, Any]] = []
    for number in range(count):
        row: dict[str, Any] = {"pair": number + 1, "at": time.strftime("%H:%M:%S"), "load": round(os.getloadavg()[0], 2)}
        if floor:
            row["floor"] = run_floor(KEYS, duration_s, rate, True, transport)["cpu_us_per_event"]
        order = [("before", before), ("after", after)]
        for name, root in order if number % 2 == 0 else order[::-1]:
            result = one(root, transport, rate, duration_s)
            latency = result.get("publish_to_sub_ms", {})
            row[name] = result["cpu_us_per_event"]
            row[f"{name}_p50_p99_ms"] = [latency.get("p50"), latency.get("p99")]
        row["after/before"] = round(row["after"] / row["before"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry: the pairs, then the median ratio and in how many pairs the after was lower."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--floor", action="store_true")
    args = parser.parse_args(argv)
    set_priority(os.getpid(), PRIORITY)  # the publisher, reader and floor inherit it, as in --broker-only
    rows = pairs(args.before.resolve(), args.after.resolve(), args.transport, args.rate, args.duration, args.pairs, args.floor)
    ratios = sorted(row["after/before"] for row in rows)
    print(f"median after/before {ratios[len(ratios) // 2]}, range {ratios[0]}-{ratios[-1]}, "
          f"after lower in {sum(ratio < 1 for ratio in ratios)} of {len(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
