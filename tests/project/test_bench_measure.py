"""The benchmark's peak-memory figure is the command's own, not carried over from its parent."""

from __future__ import annotations

import sys

from bench import measure


def test_trivial_command_reports_a_small_peak_even_under_a_large_parent() -> None:
    ballast = bytearray(400 * 1024 * 1024)  # this process now holds 400 MB
    ballast[::4096] = b"x" * len(ballast[::4096])
    usage = measure.run(["true"])
    assert usage.exit_code == 0
    assert usage.peak_rss_mb < 50, usage
    del ballast


def test_peak_reflects_what_the_command_itself_allocates() -> None:
    usage = measure.run(
        [sys.executable, "-c", "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"]
    )
    assert usage.exit_code == 0
    assert 200 <= usage.peak_rss_mb < 300, usage


def test_exit_code_and_cpu_time_are_the_commands() -> None:
    usage = measure.run([sys.executable, "-c", "import sys\nx = sum(range(5_000_000))\nsys.exit(3)"])
    assert usage.exit_code == 3
    assert usage.cpu > 0.05
