"""examples/multi30k/prepare.sh on a slice of ../shared/data/multi30k, made in tmp."""

import os

import pytest
from conftest import REPO, head, script, write

MULTI30K = os.path.join(REPO, "..", "shared", "data", "multi30k")
SLICE = {"train": 400, "val": 60, "test_2016_flickr": 50}


def prepare(*args, check=True):
    return script("prepare.sh", *args, check=check, example="multi30k")


@pytest.fixture(scope="module")
def raw_slice(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi30k_slice")
    for name, lines in SLICE.items():
        for lang in ("de", "en"):
            write(folder / f"{name}.{lang}", head(os.path.join(MULTI30K, f"{name}.{lang}"), lines))
    return folder


@pytest.mark.parametrize("segmenter", ["bpe", "spm"])
def test_prepare_tokenizes_lowercases_segments_and_binarizes(raw_slice, tmp_path, segmenter):
    out = tmp_path / "out"
    flags = ["--spm", "--bpe-tokens", "300"] if segmenter == "spm" else ["--bpe-tokens", "300"]
    result = prepare("--data", raw_slice, "--out", out, *flags)
    for split, pairs in (("train", 400), ("valid", 60), ("test", 50)):
        assert f"{split}: {pairs} pairs" in result.stdout
    raw = head(raw_slice / "train.en", 1)[0]  # "Two young, White males are outside near many bushes."
    tokenized = head(out / "tok" / "train.en", 1)[0]
    assert tokenized == tokenized.lower() and tokenized != raw.lower()
    assert tokenized.split()[:3] == ["two", "young", ","] and tokenized.endswith(" .")
    segmented = (out / "segmented" / "train.de").read_text()
    assert ("@@ " in segmented) if segmenter == "bpe" else ("\u2581" in segmented)
    assert (out / "bin" / "dict.de.txt").read_text() == (out / "bin" / "dict.en.txt").read_text()  # joined
    for split in ("train", "valid", "test"):
        assert (out / "bin" / f"{split}.de-en.en.bin").stat().st_size > 0
    # idempotent: a second run rebuilds exactly the same files
    before = (out / "segmented" / "test.en").read_text()
    prepare("--data", raw_slice, "--out", out, *flags)
    assert (out / "segmented" / "test.en").read_text() == before


def test_missing_or_mismatched_files_get_one_line(raw_slice, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in raw_slice.iterdir():
        (broken / f.name).write_text(f.read_text())
    (broken / "val.en").unlink()
    result = prepare("--data", broken, "--out", tmp_path / "out", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"prepare.sh: error: --data {broken}: missing {broken}/val.en"]
    write(broken / "val.en", head(raw_slice / "val.en", 10))
    result = prepare("--data", broken, "--out", tmp_path / "out", check=False)
    assert "Traceback" not in result.stderr and "has 60 lines" in result.stderr and "has 10" in result.stderr
