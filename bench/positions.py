"""What the position handler costs per fill: CPU seconds and SQL statements, the handler alone, in a child process.

    python -m bench.positions [--fills 2000] [--rounds 3] [--mode catch-up|wakes] [--code-root DIR ...]
                              [--database-url URL] [--json FILE]

Each run is a fresh child process of one `--code-root` (default: this tree; give an
extract of main, e.g. /tmp/posfill-before, for the "before" figure: the child imports
that tree first, so its producers/ and store/ are measured). The child makes a new
database (a SQLite file in a temp folder, or with `--database-url postgresql+...` a
new schema of it, dropped afterwards), writes `--fills` execution rows as the order
handler does (ACCOUNTS accounts x STRATEGIES strategies x SYMBOLS, random sides,
sizes and prices from one seed), then runs `PositionHandler.catch_up` until every
fill is applied (`--mode wakes`: `on_message` with each fill's wake-up, in id order,
the fast path a quiet pipeline takes), and only that is measured: process CPU (utime + stime), wall time,
the statements sent to the database (SQLAlchemy's `before_cursor_execute`) and the
commits. It also prints a digest of every outbox event the handler wrote (times and
`published_ns` left out), so that two trees can be seen to write the same events.
The roots are interleaved round by round, so each meets the same moments of a shared
machine; the table gives per root the median of the rounds and the first root's over
the last. Not tests: figures for docs/benchmarks.md; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stack import child_env

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS, STRATEGIES = 4, 2
SYMBOLS = ("BTC/USDT", "SOL/USDT")
SEED = 20261203

CHILD = r'''
import gc, hashlib, json, random, secrets, sys, tempfile, time
from decimal import Decimal
from pathlib import Path
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url
from bus import codec
from producers.positions import PositionHandler
from store.db import init_db, make_engine, make_session_factory
from store.handoff import Execution, OutboxEvent
from store.models import Account, Order, Strategy, User

fills, accounts, strategies, seed = (int(a) for a in sys.argv[1:5])
symbols, url, mode = sys.argv[5].split(","), sys.argv[6], sys.argv[7]
schema = admin = None
if url.startswith("sqlite"):
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-positions-')) / 'positions.db'}"
else:
    schema = f"bench_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
engine = make_engine(url)
init_db(engine)
sessions = make_session_factory(engine)
rng = random.Random(seed)
with sessions() as session:
    users = [User(username=f"u{n}", password_hash="-", api_token_hash=f"t{n}") for n in range(accounts)]
    session.add_all(users)
    session.flush()
    owned = [Account(user_id=u.id, name=f"acct {u.id}", exchange="paper", capital=Decimal(100_000)) for u in users]
    plans = [Strategy(owner_id=users[0].id, name=f"s{n}", group_name=f"g{n}", webhook_token_hash="-") for n in range(strategies)]
    session.add_all(owned + plans)
    session.flush()
    orders = [Order(order_id=f"o-{a.id}-{s.id}-{sym}", account_id=a.id, strategy_id=s.id, user_id=a.user_id, symbol=sym,
                    side="BUY", order_type="MARKET", quantity=Decimal(1), status="FILLED")
              for a in owned for s in plans for sym in symbols]
    session.add_all(orders)
    session.flush()
    for _ in range(fills):
        o = rng.choice(orders)
        session.add(Execution(order_id=o.id, account_id=o.account_id, strategy_id=o.strategy_id, user_id=o.user_id,
                              symbol=o.symbol, side=rng.choice(("BUY", "BUY", "SELL")),
                              quantity=Decimal(rng.randint(1, 10**8)).scaleb(-8),
                              price=Decimal(rng.randint(9_000_000, 9_100_000)).scaleb(-2)))
    session.commit()

counts = {"statements": 0, "commits": 0}
def statement(*_args):
    counts["statements"] += 1
def commit(*_args):
    counts["commits"] += 1
handler = PositionHandler(sessions, lambda rows: None)
gc.collect()
event.listen(engine, "before_cursor_execute", statement)
event.listen(engine, "commit", commit)
cpu, wall = time.process_time(), time.perf_counter()
if mode == "catch-up":
    handler.catch_up(lambda: False)
else:  # a wake-up per fill, in id order, as the order handler sends them: the fast path
    with sessions() as session:
        ids = list(session.scalars(select(Execution.id).order_by(Execution.id)))
    for fill_id in ids:
        handler.on_message([b"fill", codec.pack({"fill_id": fill_id})])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
event.remove(engine, "before_cursor_execute", statement)
event.remove(engine, "commit", commit)

digest = hashlib.sha256()
events = 0
with sessions() as session:
    assert session.scalar(select(Execution.id).where(Execution.applied_at.is_(None))) is None, "fills left pending"
    for payload in session.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)):
        wire = codec.unpack_map(payload)
        for moment in ("published_ns", "timestamp"):
            wire.pop(moment, None)
        digest.update(json.dumps(wire, sort_keys=True).encode())
        events += 1
engine.dispose()
if admin is not None:
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
print(json.dumps({"fills": handler.applied, "events": events, "cpu_s": cpu, "wall_s": wall, **counts,
                  "digest": digest.hexdigest()[:16]}))
'''


def run_child(root: Path, fills: int, database_url: str, mode: str) -> dict[str, Any]:
    """One fresh child process of `root`: its figures as the child printed them."""
    env = child_env(root)
    args = [sys.executable, "-c", CHILD, str(fills), str(ACCOUNTS), str(STRATEGIES), str(SEED), ",".join(SYMBOLS),
            database_url, mode]
    with tempfile.TemporaryDirectory() as cwd:  # `-c` puts the working folder first on sys.path: an empty one
        done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child of {root} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(roots: list[Path], fills: int, rounds: int, database_url: str, mode: str) -> dict[str, list[dict[str, Any]]]:
    """Every root's runs, the roots interleaved round by round."""
    runs: dict[str, list[dict[str, Any]]] = {str(root): [] for root in roots}
    for _ in range(rounds):
        for root in roots:
            runs[str(root)].append(run_child(root, fills, database_url, mode))
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per fill: median CPU and wall ms over the rounds, statements and commits; the events and their digest."""
    fills = runs[0]["fills"]
    return {
        "fills": fills,
        "cpu_ms_per_fill": round(statistics.median(r["cpu_s"] for r in runs) * 1000 / fills, 3),
        "cpu_ms_per_fill_all": [round(r["cpu_s"] * 1000 / fills, 3) for r in runs],
        "wall_ms_per_fill": round(statistics.median(r["wall_s"] for r in runs) * 1000 / fills, 3),
        "statements_per_fill": round(statistics.median(r["statements"] for r in runs) / fills, 2),
        "commits_per_fill": round(statistics.median(r["commits"] for r in runs) / fills, 3),
        "events": runs[0]["events"],
        "digests": sorted({r["digest"] for r in runs}),
    }


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per root, and the first root's over the last."""
    lines = ["| tree | fills | CPU ms / fill (median; each round) | wall ms / fill | statements / fill | commits / fill"
             " | events | events digest |", "|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        rounds = ", ".join(map(str, s["cpu_ms_per_fill_all"]))
        lines.append(f"| {name} | {s['fills']} | {s['cpu_ms_per_fill']} ({rounds}) | {s['wall_ms_per_fill']} |"
                     f" {s['statements_per_fill']} | {s['commits_per_fill']} | {s['events']} | {', '.join(s['digests'])} |")
    if len(summaries) > 1:
        first, *_, last = summaries.values()
        ratios = [first[k] / last[k] if last[k] else float("inf")
                  for k in ("cpu_ms_per_fill", "wall_ms_per_fill", "statements_per_fill", "commits_per_fill")]
        lines.append("| first / last | | " + " | ".join(f"{r:.1f}x" for r in ratios) + " | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table (and the JSON to --json FILE)."""
    parser = argparse.ArgumentParser(prog="python -m bench.positions", description=__doc__.split("\n")[0])
    parser.add_argument("--fills", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code-root", type=Path, action="append",
                        help="a tree whose position handler is measured (repeat it: before first, after last)")
    parser.add_argument("--database-url", default="sqlite://",
                        help="sqlite (a new temp file, the default) or a PostgreSQL URL (a new schema of it)")
    parser.add_argument("--mode", choices=("catch-up", "wakes"), default="catch-up",
                        help="catch-up: one catch_up over every pending fill (a start, a sweep, a burst behind);"
                             " wakes: one wake-up per fill in id order (on_message, the fast path)")
    parser.add_argument("--json", type=Path, help="also write the runs and summaries as JSON here")
    args = parser.parse_args(argv)
    runs = measure(args.code_root or [ROOT], args.fills, args.rounds, args.database_url, args.mode)
    summaries = {name: summary(r) for name, r in runs.items()}
    print(table(summaries))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summaries": summaries}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
