"""How long validation and compilation take, against plain YAML parsing of the same files.

Baseline: PyYAML's C safe loader reading every example (what any tool must pay just to
read YAML). Measured in the same run, so the ratio holds across machines.

    .venv/bin/python bench/dsl.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from cjo.activities.calls.catalog import default_registry
from cjo.dsl import InMemoryLookup, compile_bundle, validate

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def _median_seconds(work: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    texts = [(str(path), path.read_text(encoding="utf-8")) for path in EXAMPLES]
    lookup = InMemoryLookup.of(activities=default_registry().declarations())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def parse_only() -> None:
        for _, text in texts:
            list(yaml.load_all(text, Loader=loader))  # C safe loader: no arbitrary objects

    def validate_all() -> None:
        for name, text in texts:
            validate(text, name, lookup)

    def compile_all() -> None:
        for name, text in texts:
            compile_bundle(text, name, lookup)

    validate_all()  # warm caches (compiled CEL and templates), as a long-lived process has
    baseline = _median_seconds(parse_only, rounds)
    validated = _median_seconds(validate_all, rounds)
    compiled = _median_seconds(compile_all, rounds)
    size = sum(len(text.encode()) for _, text in texts)
    print(f"{len(texts)} example bundles, {size / 1024:.0f} KiB, median of {rounds} rounds")
    print(f"  yaml.safe_load (baseline)   {baseline * 1000:8.2f} ms   1.00x")
    print(
        f"  cjo validate                {validated * 1000:8.2f} ms   {validated / baseline:5.2f}x"
    )
    print(f"  cjo validate + compile      {compiled * 1000:8.2f} ms   {compiled / baseline:5.2f}x")
    print(f"  per bundle, validate+compile: {compiled / len(texts) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
