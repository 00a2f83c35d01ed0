"""The benchmark records kept in the repository stay small: the repository stops growing with every run."""

import os

from conftest import REPO

RECORDS = os.path.join(REPO, "docs", "benchmark")
LIMIT_BYTES = 20_000_000


def test_the_benchmark_records_stay_under_20_mb():
    sizes = {os.path.join(folder, name): os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(RECORDS) for name in names}
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
    assert sum(sizes.values()) < LIMIT_BYTES, f"{sum(sizes.values()):,} bytes; the largest files: {largest}"
