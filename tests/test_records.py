"""The benchmark records kept in the repository stay small: the repository stops growing with every run."""

import hashlib
import os

from conftest import REPO

RECORDS = os.path.join(REPO, "docs", "benchmark")
LIMIT_BYTES = 20_000_000


def stored_sizes(folder):
    """The size of each distinct file content under ``folder``, as git stores it: once, however many files hold it
    (the test references every Multi30k preset shares, the teacher ``l2t-train-teacher`` copies to
    ``teacher.pt``)."""
    sizes = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                sizes.setdefault(hashlib.sha256(f.read()).hexdigest(), (path, os.path.getsize(path)))
    return dict(sizes.values())


def test_the_benchmark_records_stay_under_20_mb():
    sizes = stored_sizes(RECORDS)
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
    assert sum(sizes.values()) < LIMIT_BYTES, f"{sum(sizes.values()):,} bytes; the largest files: {largest}"


def test_a_content_is_counted_once(tmp_path):
    (tmp_path / "a").mkdir()
    for path in ("a/reference.txt", "reference.txt"):
        (tmp_path / path).write_text("a dog runs .\n")
    (tmp_path / "source.txt").write_text("ein hund läuft .\n")
    assert sorted(stored_sizes(tmp_path).values()) == [13, 18]
