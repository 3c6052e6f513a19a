"""tradestream-bench as a process: one small real run through broker and streamer, and its flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert set(run) == set(report.RUN_KEYS)
    assert set(run["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert set(run["streamer_rss_kib_per_connection"]) == {"idle", "loaded"}
    assert (run["connections"], run["keys"]) == (20, 4)
    assert run["lost"] == 0
    assert run["duplicated"] == 0
    assert run["deliveries_per_s"] > 0
    assert (tmp_path / "run.png").stat().st_size > 0


@pytest.mark.parametrize("argv", [["--bogus"], ["--connections", "0"], ["--rate", "fast"], ["--connections", "3", "--keys", "4"]])
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2


def test_settings_come_from_flags_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESTREAM_CONNECTIONS", "40")
    monkeypatch.setenv("TRADESTREAM_KEYS", "8")
    config, _ = parse_config(["--keys", "10"])
    assert (config.connections, config.keys) == (40, 10)
