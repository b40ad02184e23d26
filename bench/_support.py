"""What the benchmarks share: stopping their child processes and reading latencies.

Imported by the scripts beside it (`python bench/<name>.py` puts this folder on the path).
"""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen[str], *, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def latency_line(seconds: list[float]) -> str:
    return (
        f"p50 {percentile(seconds, 0.5) * 1000:6.0f} ms   "
        f"p99 {percentile(seconds, 0.99) * 1000:6.0f} ms   "
        f"max {max(seconds) * 1000:6.0f} ms"
    )
