"""json-flood: bench/jsonbodies.py's bodies sent to a real webhook process, and the CPU it spends per request.

    python -m bench.hostile json-flood [--requests 200] [--code-root DIR ...]

One webhook per `--code-root` (default: this tree; an extract of main, e.g.
/tmp/json-before, first, for before/after in one run), each on the same broker and
database, `--rate-limit` and the budget of failed authentications out of the way (the
bodies' tokens are wrong: the figures are the reading's, not the budget's 429). For each body kind, each webhook in turn
gets `--requests` POSTs on one keep-alive connection; the figures are the webhook's
CPU (utime + stime from /proc, 10 ms ticks: hence many requests) per request, the
client's median wall time per request, and the statuses it answered.
"""

from __future__ import annotations

import http.client
import statistics
import time
from pathlib import Path
from typing import Any

from bench.jsonbodies import hostile_bodies
from bench.procstat import cpu_seconds
from bench.targets import hostile_stack, start_target

ANSWER_TIMEOUT_S = 30.0
NO_AUTH_BUDGET = {"TRADESTREAM_AUTH_FAILURES": "0"}


def _send(port: int, body: bytes, requests: int) -> tuple[list[float], dict[int, int]]:
    """`requests` POSTs of `body` on one connection: each one's wall ms, and how many got each status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    walls: list[float] = []
    statuses: dict[int, int] = {}
    try:
        for _ in range(requests):
            start = time.perf_counter()
            connection.request("POST", "/api/webhook", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            walls.append((time.perf_counter() - start) * 1000)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.will_close:
                connection.close()
    finally:
        connection.close()
    return walls, statuses


def json_flood(requests: int, roots: list[Path]) -> list[dict[str, Any]]:
    """Per body kind and root: the webhook's CPU ms per request, the client's median wall ms, the statuses."""
    with hostile_stack() as (stack, workdir):
        targets = {str(root): start_target("webhook", stack, workdir, root=root, extra=("--rate-limit", "1000000"),
                                               env=NO_AUTH_BUDGET)
                   for root in roots}
        rows = []
        for kind, body in hostile_bodies().items():
            row: dict[str, Any] = {"kind": kind, "bytes": len(body), "roots": {}}
            for name, (proc, port, _) in targets.items():
                _send(port, body, 5)  # warm: the connection, the code path
                cpu0 = cpu_seconds(proc.pid)
                walls, statuses = _send(port, body, requests)
                row["roots"][name] = {
                    "cpu_ms_per_request": round((cpu_seconds(proc.pid) - cpu0) * 1000 / requests, 2),
                    "wall_ms_median": round(statistics.median(walls), 2),
                    "statuses": {str(code): count for code, count in sorted(statuses.items())},
                }
            rows.append(row)
        return rows


def flood_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per body kind, CPU ms per request and wall ms per root, first over last."""
    names = list(rows[0]["roots"])
    head = "| body | " + " | ".join(f"{name}: CPU ms / request (wall ms)" for name in names)
    head += " | CPU ratio | statuses |" if len(names) > 1 else " | statuses |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        figures = [row["roots"][name] for name in names]
        line = f"| {row['kind']} | " + " | ".join(f"{f['cpu_ms_per_request']} ({f['wall_ms_median']})" for f in figures)
        if len(names) > 1:
            last = figures[-1]["cpu_ms_per_request"]
            line += f" | {figures[0]['cpu_ms_per_request'] / last:.1f}x" if last else " | -"
        statuses = sorted({f"{code}" for f in figures for code in f["statuses"]})
        lines.append(line + " | " + ", ".join(statuses) + " |")
    return "\n".join(lines)
