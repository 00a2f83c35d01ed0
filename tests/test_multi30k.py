"""examples/multi30k/prepare.sh on a slice of ../shared/data/multi30k, made in tmp."""

import json
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


@pytest.fixture(scope="module")
def clean(raw_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    prepare("--data", raw_slice, "--out", out, "--bpe-tokens", "300")
    return out


def noisy(raw_slice, out, *flags):
    prepare("--data", raw_slice, "--out", out, "--bpe-tokens", "300", *flags)
    return json.loads((out / "noise.json").read_text())


@pytest.mark.parametrize("kind", ["untranslated", "misaligned"])
def test_noise_corrupts_the_share_of_training_pairs_it_is_asked_to_and_nothing_else(raw_slice, clean, tmp_path, kind):
    record = noisy(raw_slice, tmp_path / "a", "--noise", f"{kind}:0.2", "--noise-seed", "3")
    corrupted = record["corrupted"]
    assert record["noise"] == kind and record["pairs"] == 400 and len(corrupted) == 80 == len(set(corrupted))
    source, target = ((tmp_path / "a" / "tok" / f"train.{lang}").read_text().splitlines() for lang in ("de", "en"))
    clean_target = (clean / "tok" / "train.en").read_text().splitlines()
    assert source == (clean / "tok" / "train.de").read_text().splitlines()  # sources untouched
    for i in range(400):
        if i not in corrupted:
            assert target[i] == clean_target[i]
        elif kind == "untranslated":
            assert target[i] == source[i]
        else:  # another pair's clean target
            assert target[i] != clean_target[i] and target[i] in clean_target
    for split in ("valid", "test"):  # dev and test stay clean, segmented with the noisy training set's BPE
        for lang in ("de", "en"):
            name = f"{split}.{lang}"
            assert (tmp_path / "a" / "tok" / name).read_text() == (clean / "tok" / name).read_text()
    # reproducible from its seed; another seed corrupts other pairs
    assert noisy(raw_slice, tmp_path / "b", "--noise", f"{kind}:0.2", "--noise-seed", "3") == record
    assert noisy(raw_slice, tmp_path / "c", "--noise", f"{kind}:0.2", "--noise-seed", "4")["corrupted"] != corrupted


def test_the_overlap_filter_drops_the_copies(raw_slice, tmp_path):
    record = noisy(raw_slice, tmp_path / "out", "--noise", "untranslated:0.2", "--filter-overlap", "0.5")
    assert set(record["corrupted"]) <= set(record["dropped"])  # every copy goes, and few clean pairs with it
    assert len(record["dropped"]) < 80 + 40
    assert len((tmp_path / "out" / "tok" / "train.en").read_text().splitlines()) == 400 - len(record["dropped"])


@pytest.mark.parametrize("value, message", [("copied:0.2", "the kind must be one of"),
                                            ("untranslated:1.5", "the rate must be in (0, 1]"),
                                            ("untranslated", "the rate must be a number")])
def test_a_bad_noise_flag_gets_one_line(raw_slice, tmp_path, value, message):
    result = prepare("--data", raw_slice, "--out", tmp_path / "out", "--noise", value, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"prepare.sh: error: --noise {value}: ")
    assert message in result.stderr
