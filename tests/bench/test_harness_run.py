"""tradestream-bench as a process: one small real run through broker and streamer, and its flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.harness import parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_small_real_run_writes_the_contract_json_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--connections", "20", "--keys", "4", "--duration", "2",
         "--rate", "40", "--json", str(out), "--plot", str(tmp_path / "run.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(out.read_text())
    assert set(run) == {*report.RUN_KEYS, *report.DIAGNOSTIC_KEYS}
    assert set(run["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert set(run["streamer_rss_kib_per_connection"]) == {"idle", "loaded"}
    assert (run["connections"], run["keys"]) == (20, 4)
    assert run["lost"] == 0
    assert run["duplicated"] == 0
    assert run["deliveries_per_s"] > 0
    assert (tmp_path / "run.png").stat().st_size > 0
    # publish → arrived in the client's kernel, beside publish → read: never later, per delivery and so at every rank
    assert set(run["arrival_latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert all(run["arrival_latency_ms"][q] <= run["latency_ms"][q] for q in run["latency_ms"])
    assert run["stages_ms"]["arrived_to_read"]["count"] == 20 * 2 * 40 // 4  # every delivery: 20 streams, 80 events
    assert run["loadgen_cpu_us_per_read"] > 0


@pytest.mark.parametrize("argv", [["--bogus"], ["--connections", "0"], ["--rate", "fast"], ["--connections", "3", "--keys", "4"],
                                  ["--sweep", "1000,fast"], ["--sweep", "0"], ["--cost-curve", "5"], ["--rounds", "0"]])
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2


def test_settings_come_from_flags_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTREAM_CONNECTIONS", "40")
    monkeypatch.setenv("TRADESTREAM_KEYS", "8")
    config, _ = parse_config(["--keys", "10"])
    assert (config.connections, config.keys) == (40, 10)


def test_the_broker_journal_switch_keeps_its_older_name_and_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTREAM_JOURNAL", "var/broker-journal.db")  # the broker's, as `make run` exports it
    assert parse_config([])[0].broker_journal is False
    assert parse_config(["--journal"])[0].broker_journal is True
    monkeypatch.setenv("TRADESTREAM_BROKER_JOURNAL", "on")
    assert parse_config([])[0].broker_journal is True


def test_a_started_broker_reads_none_of_the_callers_variables(tmp_path: Path) -> None:
    """TRADESTREAM_JOURNAL exported for a stack must not give the broker the bench measures a journal."""
    journal = tmp_path / "callers-journal.db"
    out = tmp_path / "out.json"
    env = {**os.environ, "TRADESTREAM_JOURNAL": str(journal)}
    result = subprocess.run([sys.executable, "-m", "bench.harness", "--broker-only", "--rate", "200", "--duration", "1",
                             "--keys", "5", "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(json.loads(out.read_text())["rounds"][0]) == ["floor", "broker"]
    assert not journal.exists()


def bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """Run tradestream-bench with `argv` and --json; the object it wrote."""
    out = tmp_path / "out.json"
    result = subprocess.run([sys.executable, "-m", "bench.harness", *argv, "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    obj: dict[str, Any] = json.loads(out.read_text())
    return obj


def test_a_run_publishes_rate_times_duration_and_breaks_the_latency_down_by_stage(tmp_path: Path) -> None:
    run = bench(tmp_path, "--connections", "6", "--keys", "3", "--duration", "1.5", "--rate", "30")
    stages = run["stages_ms"]
    assert stages["published_to_sequenced"]["count"] == 45  # 30/s for 1.5 s, each event once per key batch
    assert stages["sequenced_to_read"]["count"] == 45
    assert stages["read_to_written"]["count"] == 45
    assert stages["loop_lag"]["count"] > 0
    assert {"p50", "p99", "p999", "max", "count"} <= set(stages["sequenced_to_read"])
    assert run["lost"] == 0
    assert run["load_average"] is not None


def test_broker_only_paced_measures_the_floor_and_the_broker_back_to_back(tmp_path: Path) -> None:
    out = bench(tmp_path, "--broker-only", "--rate", "200", "--duration", "2", "--keys", "5", "--rounds", "2")
    assert len(out["rounds"]) == 2
    for results in out["rounds"]:
        assert list(results) == ["floor", "broker"]
        for result in results.values():
            assert result["pushed_total"] == 400
            assert result["moved_in_window"] > 0
            assert result["cpu_us_per_event"] is not None
            assert set(result["publish_to_sub_ms"]) == {"p50", "p90", "p99", "p999", "max"}


def test_sweep_writes_one_run_per_rate_and_one_plot(tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    out = bench(tmp_path, "--sweep", "20,40", "--connections", "4", "--keys", "2", "--duration", "1", "--plot", str(plot))
    assert [run["rate"] for run in out["sweep"]] == [20.0, 40.0]
    assert all(run["lost"] == 0 for run in out["sweep"])
    assert plot.stat().st_size > 0


def test_cost_curve_starts_a_fresh_stack_per_n_with_a_tenth_as_many_keys(tmp_path: Path) -> None:
    plot = tmp_path / "cost.png"
    out = bench(tmp_path, "--cost-curve", "10,20", "--rate", "20", "--duration", "1", "--plot", str(plot))
    assert [(run["connections"], run["keys"]) for run in out["cost_curve"]] == [(10, 1), (20, 2)]
    assert all(run["streamer_rss_kib_per_connection"]["idle"] is not None for run in out["cost_curve"])
    assert plot.stat().st_size > 0


def test_transport_ipc_puts_a_full_stacks_bus_on_unix_sockets_and_its_streams_lose_nothing(tmp_path: Path) -> None:
    from bench.harness import stack_transport
    from bench.stack import start_stack, streamer_stats

    assert [stack_transport(parse_config(["--transport", name])[0]) for name in ("tcp", "ipc", "both")] == ["tcp", "ipc", "tcp"]
    stack = start_stack(2, 1, 100, [], transport="ipc")
    try:
        assert stack.ingress.startswith("ipc://") and stack.publish.startswith("ipc://") and stack.replay.startswith("ipc://")
        assert streamer_stats(stack)["broker"] == "up"  # the streamer hears the broker over them
    finally:
        stack.stop()
    run = bench(tmp_path, "--connections", "4", "--keys", "2", "--duration", "1", "--rate", "20", "--transport", "ipc")
    assert run["lost"] == 0 and run["duplicated"] == 0 and run["deliveries_per_s"] > 0
