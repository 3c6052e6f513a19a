"""tradestream-bench: settings, the stack's lifetime, --find-max and --broker-only, the report."""

from __future__ import annotations

import logging
import os
import resource
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from bench import report, sweep
from bench.brokeronly import run_broker, run_floor
from bench.config import BenchConfig
from bench.procstat import autogroup_nice, pin, set_priority
from bench.run import Progress, run_once
from bench.stack import ROOT, Stack, StackError, attach_stack, broker_only_stack, start_stack
from bus.process import SettingsParser, configure_logging

log = logging.getLogger(__name__)
MAX_PROBE_RATE = 1_000_000.0


def parse_config(argv: list[str] | None) -> tuple[BenchConfig, str]:
    """Flags and TRADESTREAM_* variables into a BenchConfig and a log level."""
    parser = SettingsParser(
        BenchConfig,
        prog="tradestream-bench",
        description="Fan-out latency benchmark: N SSE streams over K keys, events published at R/s through "
        "the real broker and streamer; reports deliveries/s, publish→receive latency, loss, duplicates, "
        "streamer CPU per delivery and RSS per connection.",
        epilog="Examples: tradestream-bench --connections 1000 --keys 100 --rate 2000 --duration 10 --pin; "
        "tradestream-bench --find-max --json max.json --plot max.png; tradestream-bench --broker-only --pin --rate 4000; "
        "tradestream-bench --sweep 5 --pin --plot sweep.png; tradestream-bench --cost-curve 1000,5000,15000 --rate 2000 --pin",
    )
    config, log_level = parser.parse(argv)
    if config.connections < config.keys:
        parser.error(f"--connections {config.connections} must be at least --keys {config.keys}")
    for name, text in (("--sweep", config.sweep), ("--cost-curve", config.cost_curve)):
        try:
            if any(value <= 0 for value in config.numbers(text)):
                raise ValueError
        except ValueError:
            parser.error(f"{name}: expected positive numbers separated by commas, got {text!r}")
    if config.cost_curve and any(n < 10 for n in config.numbers(config.cost_curve)):
        parser.error("--cost-curve: every N must be at least 10 (K = N/10)")
    return config, log_level


def find_max(stack: Stack, cfg: BenchConfig, progress: Progress) -> tuple[float, dict[int, report.RunResult]]:
    """Double the rate while a run passes, then bisect between the last pass and the first failure."""
    runs: dict[int, report.RunResult] = {}

    def probe(rate: float) -> bool:
        run, _, _ = run_once(stack, cfg, rate, progress)
        ok = run.passes(run.extra["expected_deliveries"])
        progress.note(f"rate {rate:,.0f}/s: {'pass' if ok else 'FAIL'} (p99 {run.latency_ms['p99']} ms, lost {run.lost}, "
                      f"closed {run.extra['streams_closed']}, slow {run.slow_consumer_disconnects})")
        runs[round(rate)] = run
        return ok

    low, high = 0.0, 0.0
    rate = cfg.fanout_rate
    while rate <= MAX_PROBE_RATE:
        if not probe(rate):
            high = rate
            break
        low, rate = rate, rate * 2
    if not high:
        return low, runs
    while low and high / low > 1.1:
        middle = (low + high) / 2
        low, high = (middle, high) if probe(middle) else (low, middle)
    if not low:
        while rate > 1 and not probe(rate := rate / 2):
            pass
        low = rate if rate > 1 else 0.0
    return low, runs


def place(stack: Stack, cfg: BenchConfig) -> None:
    """--pin: the streamer on core 0, the broker on core 1; --priority: both ahead of other work."""
    for pid, core in ((stack.streamer_pid, 0), (stack.broker_pid, 1)):
        if pid is None:
            continue
        if cfg.pin and stack.streamer_pid:
            pin(pid, {core})
        if cfg.priority:
            set_priority(pid, cfg.priority)


def measure(stack: Stack, cfg: BenchConfig, progress: Progress) -> int:
    """The runs asked for, then the table, the JSON and the plot."""
    place(stack, cfg)
    if cfg.sweep:
        return run_sweep(stack, cfg, progress)
    if not cfg.find_max:
        run, latencies, per_second = run_once(stack, cfg, cfg.fanout_rate, progress)
        print(report.table(run, f"{cfg.fanout_rate:,.0f} events/s"))
        obj: dict[str, Any] = run.to_json()
    else:
        max_rate, _ = find_max(stack, cfg, progress)
        if not max_rate:
            progress.note("no rate passed; lower --rate")
            return 1
        at_half, latencies, per_second = run_once(stack, cfg, max_rate / 2, progress)
        at_90, _, _ = run_once(stack, cfg, max_rate * 0.9, progress)
        print(f"max rate: {max_rate:,.0f} events/s ({max_rate * cfg.connections / len(stack.keys):,.0f} deliveries/s)")
        print(report.table(at_half, "at 50% of max"))
        print(report.table(at_90, "at 90% of max"))
        run, obj = at_half, report.find_max_json(max_rate, at_half, at_90)
    if cfg.json:
        report.write_json(cfg.json, obj, sys.stdout)
    if cfg.plot:
        report.plot(cfg.plot, latencies, per_second, f"N={cfg.connections} K={len(stack.keys)} rate={run.rate:,.0f}/s")
    return 0


def run_sweep(stack: Stack, cfg: BenchConfig, progress: Progress) -> int:
    """--sweep: a run per rate (a count: evenly up to half of --find-max's rate), one table, one plot."""
    rates = cfg.numbers(cfg.sweep)
    extra: dict[str, Any] = {}
    if len(rates) == 1 and rates[0] == int(rates[0]) and rates[0] <= 20:
        max_rate, _ = find_max(stack, cfg, progress)
        if not max_rate:
            progress.note("no rate passed; lower --rate")
            return 1
        rates, extra = sweep.half_max_rates(max_rate, int(rates[0])), {"max_rate": max_rate}
        print(f"max rate: {max_rate:,.0f} events/s; sweeping {', '.join(f'{r:,.0f}' for r in rates)}")
    runs = [run_once(stack, cfg, rate, progress)[0] for rate in rates]
    print(sweep.sweep_table(runs))
    if cfg.json:
        report.write_json(cfg.json, {**extra, "sweep": [run.to_json() for run in runs]}, sys.stdout)
    if cfg.plot:
        sweep.plot_sweep(cfg.plot, runs, f"N={cfg.connections} K={len(stack.keys)}, {cfg.duration:g} s per rate")
    return 0


def stack_transport(cfg: BenchConfig) -> str:
    """The bus of a full stack: `ipc` when asked, else loopback `tcp` (`both` is for --broker-only)."""
    return "ipc" if cfg.transport == "ipc" else "tcp"


def cost_curve(cfg: BenchConfig, progress: Progress, root: Path) -> int:
    """--cost-curve: for each N a fresh stack with K = N/10 keys, one run at --rate; one table, one plot."""
    runs: list[report.RunResult] = []
    for n in (int(value) for value in cfg.numbers(cfg.cost_curve)):
        keys = n // 10
        progress.note(f"N={n:,} K={keys:,}: starting broker and streamer")
        stack = start_stack(keys, -(-n // keys), 100, shlex.split(cfg.streamer_args), cfg.broker_journal, root, stack_transport(cfg))
        try:
            place(stack, cfg)
            run, _, _ = run_once(stack, BenchConfig(**{**vars(cfg), "connections": n, "keys": keys}), cfg.fanout_rate, progress)
            runs.append(run)
        finally:
            stack.stop()
    print(sweep.cost_table(runs))
    if cfg.json:
        report.write_json(cfg.json, {"cost_curve": [run.to_json() for run in runs]}, sys.stdout)
    if cfg.plot:
        sweep.plot_cost(cfg.plot, runs, f"{cfg.fanout_rate:,.0f} events/s, {cfg.duration:g} s per N, a fresh streamer each")
    return 0


def broker_only(cfg: BenchConfig, progress: Progress, root: Path) -> int:
    """--broker-only: the floor, then a broker (then one with a journal), `--rounds` times back to back.

    Flat out without --rate; paced at --rate otherwise. Each its own fresh process.
    """
    rate = cfg.rate or 0.0
    both = cfg.transport == "both"
    floors = ["floor tcp", "floor ipc"] if both else ["floor"]
    brokers = ["broker tcp", "broker ipc"] if both else ["broker"]
    labels = [*floors, *brokers, *(["broker with journal"] if cfg.broker_journal else [])]
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(cfg.rounds):
        results: dict[str, dict[str, Any]] = {}
        for label in labels:
            progress.note(f"round {number + 1}: {label}, {'paced at ' + format(rate, ',.0f') + '/s' if rate else 'flat out'} "
                          f"over {cfg.keys} keys for {cfg.duration:g} s")
            transport = "ipc" if label.endswith("ipc") or cfg.transport == "ipc" else "tcp"
            if label.startswith("floor"):
                results[label] = run_floor(cfg.keys, cfg.duration, rate, cfg.pin, transport)
                continue
            stack = broker_only_stack(label.endswith("journal"), root, transport)
            if cfg.priority and stack.broker_pid:
                set_priority(stack.broker_pid, cfg.priority)
            try:
                results[label] = run_broker(stack, cfg.keys, cfg.duration, rate, cfg.pin)
            finally:
                stack.stop()
        rounds.append(results)
        for label, result in results.items():
            width = max(map(len, result))
            print(f"-- round {number + 1}: {label}", *(f"{name:<{width}}  {value}" for name, value in result.items()), sep="\n")
    if cfg.json:
        report.write_json(cfg.json, {"rounds": rounds}, sys.stdout)
    return 0


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-bench`."""
    cfg, log_level = parse_config(argv)
    configure_logging("bench", log_level)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    # N streams need N descriptors in the streamer and the load generator, which inherit this limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress = Progress()
    stack: Stack | None = None
    own_group = autogroup_nice(os.getpid())
    if cfg.priority:
        set_priority(os.getpid(), cfg.priority)  # the publisher, load generator, floor and reader inherit it
    root = Path(cfg.code_root).resolve() if cfg.code_root else ROOT
    try:
        if cfg.broker_only:
            return broker_only(cfg, progress, root)
        if cfg.cost_curve:
            return cost_curve(cfg, progress, root)
        per_key = -(-cfg.connections // cfg.keys)
        if cfg.attach:
            stack = attach_stack(cfg.ingress, cfg.publish, cfg.replay, cfg.host, cfg.port, cfg.database_url,
                                 cfg.streamer_pid, cfg.keys, per_key, cfg.max_streams_per_user)
        else:
            progress.note("starting broker and streamer")
            stack = start_stack(cfg.keys, per_key, 100, shlex.split(cfg.streamer_args), cfg.broker_journal, root,
                                stack_transport(cfg))
        return measure(stack, cfg, progress)
    except StackError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.info("interrupted; tearing down", exc_info=log.isEnabledFor(logging.DEBUG))
        return 0
    finally:
        if stack is not None:
            stack.stop()
        if cfg.priority and own_group is not None:
            with open(f"/proc/{os.getpid()}/autogroup", "w") as group:
                group.write(str(own_group))  # the session's other processes get their share back


if __name__ == "__main__":
    raise SystemExit(main())
