"""Throughput and memory of the service layer on the embedded adapters.

    .venv/bin/python -m tests.benchmarks.bench_service [transfers] [threads]

Prints figures; asserts nothing about speed (machines differ). The real
backends' figures come from the e2e and chaos runs.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.config import PROJECT_ROOT
from app.domain.money import AssetCatalog
from tests.unit.harness import Harness


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    catalog = AssetCatalog.from_toml((PROJECT_ROOT / "app" / "assets.toml").read_text())
    with tempfile.TemporaryDirectory() as directory:
        harness = Harness(Path(directory), catalog)
        users = list(range(1, 51))
        for user in users:
            harness.fund(user, "1000000")
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda n: harness.submit.transfer(harness.command(users[n % 50], 10**6), f"b{n}"), range(count)
                )
            )
        submitted = time.perf_counter() - started
        harness.pump()
        total = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"submit: {count} transfers in {submitted:.2f}s = {count / submitted:.0f}/s with {threads} threads")
    print(f"submit+engine+settle: {count / total:.0f}/s; peak RSS {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
