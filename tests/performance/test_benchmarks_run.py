"""The benchmark scripts still run and report (tiny sizes; the figures themselves live in docs/).

Performance is measured by the scripts in benchmarks/, never asserted as timings here: these
tests only keep the scripts from rotting as the framework changes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, cli_env

pytestmark = pytest.mark.slow


def run_benchmark(*args: str, timeout: float = 600) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_discovery_benchmark_reports_ratios() -> None:
    out = run_benchmark("benchmarks/discovery_speed.py", "--modules", "3", "--repeat", "1")
    assert " help (CLI start-up)" in out and " list, 3 pipeline modules" in out
    assert "ms per module" in out


def test_backfill_benchmark_reports_seconds_per_interval() -> None:
    out = run_benchmark("benchmarks/backfill_overhead.py", "--days", "3", "--no-parallel", "--profile-intervals", "3")
    assert "per interval" in out and "in-process, 3 intervals" in out


def test_batched_backfill_benchmark_reports_ratios() -> None:
    out = run_benchmark("benchmarks/batched_backfill.py", "--rows-per-day", "20", "--reference-days", "2")
    assert "(count, sum, partitions) in both" in out and "(target <= 3x)" in out and "batch_size 1, 2 days" in out


def test_load_benchmark_runs_the_framework_steps() -> None:
    # dlt is not a product dependency: only the framework and ClickHouse steps run here.
    out = run_benchmark("benchmarks/load_throughput.py", "--rows", "20000", "--batch-size", "5000",
                        "--steps", "clickhouse_file", "insert_arrow_loop", "framework_append",
                        "framework_interval", "framework_http")
    assert "rows/s" in out or "rows_per_second" in out


def test_ui_benchmark_renders_every_page() -> None:
    out = run_benchmark("benchmarks/ui_render.py", "--pipelines", "3", "--runs", "300", "--days", "10", "--repeat", "1")
    assert "/coverage?days=10 (grid)" in out and "x" in out and "baseline" in out


def test_check_benchmark_reports_ratios() -> None:
    out = run_benchmark("benchmarks/check_overhead.py", "--rows", "2000", "--repeat", "1")
    assert "7 built-in checks" in out and "of no checks" in out and "check unique(id)" in out


def test_alert_benchmark_reports_each_channel() -> None:
    out = run_benchmark("benchmarks/alert_overhead.py", "--repeat", "1")
    assert "webhook hanging (ALERT_TIMEOUT=1)" in out and "run itself" in out


def test_history_scale_benchmark_reports_ratios() -> None:
    out = run_benchmark("benchmarks/history_scale.py", "--small", "5", "--large", "20", "--repeat", "1")
    assert "wall ratio" in out and "backfill_list --days 400" in out and "check" in out


def test_streaming_memory_benchmark_reports_the_ratio() -> None:
    out = run_benchmark("benchmarks/streaming_memory.py", "--rows", "20000", "40000", "--batch-size", "5000",
                        "--variants", "default", "loop")
    assert "default: peak RSS" in out and "loop: peak RSS" in out and "ClickHouse tracked" in out


def test_harness_benchmark_reports_ratios_against_the_old_commit() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("the baseline commit is taken from git: not a git checkout")
    out = run_benchmark("benchmarks/test_harness.py", "--projects", "1", "--tests", "2", "--repeat", "1")
    assert "later runs, median" in out and "baseline cf6f863" in out
    assert "A test session of 3 generated pipeline tests" in out and "x\n" in out


def test_store_turns_benchmark_reports_usage_and_latency() -> None:
    out = run_benchmark("benchmarks/store_turns.py", "--turns", "4", "--warmup", "1", "--inprocess-turns", "2",
                        "--clients", "2", "--seconds", "2", "--page-turns", "2", "--server-turns", "2",
                        "--scheduler-fires", "2")
    assert "child turns      4 turns: after 1 {'threads':" in out and "s/turn" in out
    assert "in-process       2 turns" in out
    assert "2 clients, busy store:" in out and "p99" in out
    assert "page (./run.sh ui) 2 turns: after 1 {'threads':" in out and "end / warm-up {'threads': " in out
    assert "local server, server 2 turns: after 1" in out and "local server, client 2 turns: after 1" in out
    assert "scheduler 2 fires: after 1 {'threads':" in out and "chdb loaded: False" in out


def test_backfill_handovers_benchmark_reports_usage() -> None:
    out = run_benchmark("benchmarks/backfill_handovers.py", "--handovers", "2", "--warmup", "1")
    for mode in ("backfill", "cascade"):
        assert f"{mode}: alone " in out and "0 hand-overs while nobody waited; 2 hand-overs to a second process" in out
    assert out.count("after warmup  {'threads':") == 2 and out.count("end           {'threads':") == 2
    assert out.count("end / warm-up {'threads': ") == 2
