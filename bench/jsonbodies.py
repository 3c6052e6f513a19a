"""What web/jsonbody.py's reading of a request body costs, hostile 64 KiB bodies and a normal signal, in-process.

    python -m bench.jsonbodies [--repeat 200] [--code-root DIR ...] [--json FILE]

Each body kind is read `--repeat` times by `parse_json_body` of each `--code-root`
(default: this tree; give an extract of main, e.g. /tmp/json-before, for the "before"
figure: its web/jsonbody.py is loaded by path), the roots interleaved body by body so
that both meet the same moment of a shared machine. Prints, per kind, the body's
size, what the reader answered (the first words of a refusal), and the median and
maximum milliseconds of one read; the GC stays as the process has it (enabled).
`python -m bench.hostile json-flood` sends the same bodies to a webhook process.
Not tests: figures for docs/benchmarks.md; nothing here asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64 * 1024  # the webhook's and the streamer's body limit (CONTRACT sections 3 and 5)
Reader = Callable[[bytes], Any]

SIGNAL = (b'{"group_name": "btc-trend", "token": "0123456789abcdef0123456789abcdef", "symbol": "BTC/USDT",'
          b' "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5}')
_ORDER = b'{"symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "90000.5", "qty_per": 0.25}'


def filled(head: bytes, item: Callable[[int], bytes], tail: bytes, last: bytes = b"", sep: bytes = b",") -> bytes:
    """head + items joined by sep (+ sep + last) + tail: as many items as keep it within LIMIT."""
    room = LIMIT - len(head) - len(tail) - (len(last) + len(sep) if last else 0)
    items: list[bytes] = []
    used = 0
    while True:
        piece = item(len(items))
        if used + len(piece) + len(sep) > room:
            break
        items.append(piece)
        used += len(piece) + len(sep)
    return head + sep.join([*items, last] if last else items) + tail


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def hostile_bodies() -> dict[str, bytes]:
    """Body kinds by name: what an outsider may send at most (LIMIT bytes), and the legitimate bodies beside them.

    Where a body is refused, the offending part comes last: the reader does all the other work first.
    """
    return {
        "signal": SIGNAL,
        "batch of 500 orders": b'{"group_name": "btc-trend", "token": "t", "orders": [' + b", ".join([_ORDER] * 500) + b"]}",
        "deep: arrays 32 levels deep, side by side": filled(b"[", lambda _: _nested(31), b"]"),
        "too deep: 64 Ki unclosed [": b"[" * LIMIT,
        "many keys": filled(b"{", lambda n: b'"k%d":0' % n, b"}"),
        "a repeated key": filled(b"{", lambda _: b'"a":0', b"}"),
        "many keys, the last one repeated": filled(b"{", lambda n: b'"k%d":0' % n, b"}", last=b'"k0":0'),
        "many small objects": filled(b"[", lambda _: b'{"a":0}', b"]"),
        "small integers": filled(b"[", lambda _: b"1", b"]"),
        "64-bit integers, 2^63 last": filled(b"[", lambda _: b"9223372036854775807", b"]", last=b"9223372036854775808"),
        "fractions": filled(b"[", lambda _: b"0.1", b"]"),
        "huge numbers, 1E+999 last": filled(b"[", lambda _: b"1E+300", b"]", last=b"1E+999"),
        "escapes: one string of \\u00e9": filled(b'["', lambda _: b"\\u00e9", b'"]', sep=b""),
        "escaped surrogate pairs": filled(b'["', lambda _: b"\\ud83d\\ude00", b'"]', sep=b""),
        "many short strings": filled(b"[", lambda _: b'"ab"', b"]"),
        "strings with colons (no key repeated)": filled(b"{", lambda n: b'"k%d":":::"' % n, b"}"),
        "escaped U+0000 last": filled(b"[", lambda _: b'"a"', b"]", last=b'"\\u0000"'),
    }


def load_reader(code_root: Path) -> Reader:
    """`parse_json_body` of the web/jsonbody.py under `code_root` (this tree's, imported as usual, by default)."""
    if code_root.resolve() == ROOT:
        from web.jsonbody import parse_json_body

        return parse_json_body
    path = code_root / "web" / "jsonbody.py"
    spec = importlib.util.spec_from_file_location(f"jsonbody_of_{abs(hash(str(code_root)))}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no web/jsonbody.py under {code_root}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reader: Reader = module.parse_json_body
    return reader


def outcome(reader: Reader, body: bytes) -> str:
    """"accepted", or "refused: " and the first words of the reason."""
    try:
        reader(body)
    except ValueError as exc:
        return f"refused: {str(exc)[:48]}"
    return "accepted"


def time_read(reader: Reader, body: bytes) -> float:
    """Milliseconds of one read of `body` (a refusal included)."""
    start = time.perf_counter_ns()
    try:
        reader(body)
    except ValueError:
        pass
    return (time.perf_counter_ns() - start) / 1e6


def measure(roots: list[Path], repeat: int) -> list[dict[str, Any]]:
    """Per body kind and root: size, outcome, median and max ms over `repeat` reads, roots interleaved."""
    readers = {str(root): load_reader(root) for root in roots}
    rows = []
    for kind, body in hostile_bodies().items():
        samples: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(repeat):
            for name, reader in readers.items():
                samples[name].append(time_read(reader, body))
        rows.append({
            "kind": kind, "bytes": len(body),
            "roots": {name: {"outcome": outcome(reader, body), "median_ms": round(statistics.median(samples[name]), 3),
                             "max_ms": round(max(samples[name]), 3)} for name, reader in readers.items()},
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per body kind, median / max ms per root, and the first root's over the last."""
    names = list(rows[0]["roots"])
    head = "| body | bytes | " + " | ".join(f"{name}: median / max ms" for name in names)
    head += " | answer |" if len(names) == 1 else " | median ratio | answers |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        cells = [f"{row['roots'][n]['median_ms']} / {row['roots'][n]['max_ms']}" for n in names]
        answers = sorted({row["roots"][n]["outcome"] for n in names})
        line = f"| {row['kind']} | {row['bytes']:,} | " + " | ".join(cells)
        if len(names) > 1:
            first, last = row["roots"][names[0]]["median_ms"], row["roots"][names[-1]]["median_ms"]
            line += f" | {first / last:.1f}x" if last else " | -"
        lines.append(line + " | " + " / ".join(answers) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table (and the JSON to --json FILE)."""
    parser = argparse.ArgumentParser(prog="python -m bench.jsonbodies", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--code-root", type=Path, action="append",
                        help="a tree whose web/jsonbody.py is measured (repeat it: before first, after last)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = measure(args.code_root or [ROOT], args.repeat)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
