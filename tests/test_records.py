"""The benchmark records kept in the repository stay small: the repository stops growing with every run."""

import hashlib
import os
import time

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


def test_figures_are_written_with_a_palette(tmp_path):
    """``save_figure`` writes the picture matplotlib draws, in 256 colours: the same size, a fraction of the
    bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from l2t_fairseq.figures import DPI, save_figure

    def figure():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for k in range(5):
            ax.scatter(range(2000), [((i * 7919 * (k + 1)) % 1000) / 1000 for i in range(2000)], s=3, alpha=0.6)
        return fig

    fig = figure()
    fig.savefig(tmp_path / "plain.png", dpi=DPI)
    plt.close(fig)
    save_figure(figure(), tmp_path / "palette.png")
    with Image.open(tmp_path / "plain.png") as plain, Image.open(tmp_path / "palette.png") as palette:
        assert palette.mode == "P" and palette.size == plain.size
    assert os.path.getsize(tmp_path / "palette.png") < 0.6 * os.path.getsize(tmp_path / "plain.png")


def test_the_kept_plots_are_palette_pngs():
    from PIL import Image

    plots = [os.path.join(folder, name) for folder, _, names in os.walk(RECORDS) for name in names
             if name.endswith(".png")]
    assert plots and all(Image.open(path).mode == "P" for path in plots), [
        path for path in plots if Image.open(path).mode != "P"]


def test_test_outputs_are_kept_compressed_and_read_back_as_written(tmp_path):
    """A record's test outputs are gzip-compressed, the same lines to the same bytes (no time stamp), read back
    line for line, and scored by sacrebleu's command as they are."""
    import subprocess
    import sys

    from l2t_fairseq.benchmark.test_set import HYPOTHESES, read_lines, write_lines

    lines = [f"a dog number {i} runs ." for i in range(300)] + ["ein hund läuft .", ""]
    write_lines(str(tmp_path / f"a{HYPOTHESES}"), lines)
    time.sleep(1.1)  # a time stamp would differ
    write_lines(str(tmp_path / f"b{HYPOTHESES}"), lines)
    write_lines(str(tmp_path / "plain.txt"), lines)
    assert read_lines(str(tmp_path / f"a{HYPOTHESES}")) == lines == read_lines(str(tmp_path / "plain.txt"))
    assert (tmp_path / f"a{HYPOTHESES}").read_bytes() == (tmp_path / f"b{HYPOTHESES}").read_bytes()
    assert os.path.getsize(tmp_path / f"a{HYPOTHESES}") < 0.5 * os.path.getsize(tmp_path / "plain.txt")
    scores = [subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "plain.txt"), "-i", str(tmp_path / name), "-b", "-tok",
         "none", "--force"], capture_output=True, text=True, check=True).stdout
        for name in (f"a{HYPOTHESES}", "plain.txt")]
    assert scores[0] == scores[1] and float(scores[0]) == 100.0


def test_the_kept_test_outputs_are_compressed():
    from l2t_fairseq.benchmark.test_set import HYPOTHESES, read_lines

    names = [os.path.join(folder, name) for folder, _, names in os.walk(RECORDS) for name in names]
    kept = [path for path in names if path.endswith(HYPOTHESES)]
    assert kept and not [path for path in names if path.endswith(".hyp")]
    assert all(read_lines(path) for path in kept)
