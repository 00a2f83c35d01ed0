"""examples/iwslt14 end to end on a tiny slice of ../shared/data/iwslt14, made here in tmp (never committed)."""

import importlib.util
import json
import os
import re
import shlex
import tarfile

import pytest
from conftest import REPO, SHARED, head, script, write

TRAIN_LINES = 230
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")


@pytest.fixture(scope="module")
def raw_archive(tmp_path_factory):
    """A de-en.tgz laid out like the IWSLT'14 release: tagged training text and XML dev/test sets."""
    root = tmp_path_factory.mktemp("iwslt_raw")
    folder = root / "de-en"
    folder.mkdir()
    for lang in ("de", "en"):
        lines = head(os.path.join(SHARED, "tok", f"train.{lang}"), TRAIN_LINES)
        header = ["<url>http://www.ted.com/talks/x.html</url>", "<keywords>talks</keywords>", "<talkid>1</talkid>",
                  "<title>a title</title>", "<description>a description</description>"]
        write(folder / f"train.tags.de-en.{lang}", header + lines)
        for i, name in enumerate(TEST_SETS):
            segments = head(os.path.join(SHARED, "tok", f"valid.{lang}"), 5, skip=5 * i)
            body = [f'<seg id="{j + 1}"> {s} </seg>' for j, s in enumerate(segments)]
            write(folder / f"{name}.de-en.{lang}.xml", ["<mteval>", '<doc docid="1">', *body, "</doc>", "</mteval>"])
    with tarfile.open(root / "de-en.tgz", "w:gz") as tar:
        tar.add(folder, arcname="de-en")
    return root


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_prepare_builds_the_standard_split_from_a_local_archive(raw_archive, tmp_path):
    archive_only = tmp_path / "download"
    archive_only.mkdir()
    os.link(raw_archive / "de-en.tgz", archive_only / "de-en.tgz")
    out = tmp_path / "iwslt14"
    result = script("prepare.sh", "--from", archive_only, "--out", out, "--bpe-tokens", "300")
    kept = len(lines_of(out / "tok" / "train.en")) + len(lines_of(out / "tok" / "valid.en"))
    assert 0.9 * TRAIN_LINES < kept <= TRAIN_LINES  # length cleaning removed few, the tags all
    assert len(lines_of(out / "tok" / "valid.en")) == kept // 23  # every 23rd line
    assert len(lines_of(out / "tok" / "test.en")) == 5 * len(TEST_SETS)
    assert not any("<" in line for line in lines_of(out / "tok" / "train.en")), "tags leaked into the text"
    assert all(line == line.lower() for line in lines_of(out / "tok" / "test.de"))
    assert any("@@ " in line for line in lines_of(out / "segmented" / "train.de"))
    assert re.search(r"test: 25 pairs", result.stdout)
    for split in ("train", "valid", "test"):
        assert (out / "bin" / f"{split}.de-en.en.bin").is_file()
    assert lines_of(out / "bin" / "dict.de.txt") == lines_of(out / "bin" / "dict.en.txt")  # joined dictionary


def test_prepare_sentencepiece_variant(raw_archive, tmp_path):
    out = tmp_path / "iwslt14"
    script("prepare.sh", "--from", raw_archive / "de-en", "--out", out, "--spm", "--bpe-tokens", "300")
    assert (out / "segmented" / "spm.model").is_file()
    assert any("\u2581" in line for line in lines_of(out / "segmented" / "train.en"))
    assert (out / "bin" / "test.de-en.de.bin").is_file()


def test_prepare_without_a_download_names_both_ways_to_give_it_the_data(tmp_path, monkeypatch):
    """A machine that cannot download (here the URL of a port where nothing listens)."""
    spec = importlib.util.spec_from_file_location("iwslt14_prepare", os.path.join(REPO, "examples", "iwslt14",
                                                                                 "prepare.py"))
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    monkeypatch.setattr(prepare, "URL", "http://127.0.0.1:9/de-en.tgz")
    with pytest.raises(SystemExit) as stopped:
        prepare.download(str(tmp_path))
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith("prepare.sh: error: cannot download")
    assert "--from DIR" in message and "de-en.tgz" in message and "--shared DIR" in message


def test_prepare_names_the_missing_file(raw_archive, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in os.listdir(raw_archive / "de-en"):
        if "tst2011.de-en.en" not in f:
            os.link(raw_archive / "de-en" / f, broken / f)
    result = script("prepare.sh", "--from", broken, "--out", tmp_path / "out", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"prepare.sh: error: --from {broken}: missing IWSLT14.TED.tst2011.de-en.en.xml"
    ]
    result = script("prepare.sh", "--from", tmp_path / "nowhere", "--out", tmp_path / "out", check=False)
    assert result.stderr.strip() == f"prepare.sh: error: --from {tmp_path / 'nowhere'}: no such folder"


@pytest.mark.parametrize("loss", ["l2t", "ce"])
def test_small_recipe_trains_and_evaluates(small_data, tmp_path, loss):
    save_dir = tmp_path / "run"
    result = script("train_small.sh", "--loss", loss, "--data", small_data, "--save-dir", save_dir,
                    "--max-update", "6", "--teacher-interval", "3", "--unroll-steps", "2", "--max-tokens", "1000",
                    "--validate-interval-updates", "3") if loss == "l2t" else script(
        "train_small.sh", "--loss", loss, "--data", small_data, "--save-dir", save_dir, "--max-update", "6",
        "--max-tokens", "1000")
    assert "done training" in result.stdout
    if loss == "l2t":
        assert "teacher_dev_expected_bleu" in result.stdout
        assert (save_dir / "teacher.jsonl").is_file()
    evaluation = script("evaluate.sh", save_dir / "checkpoint_last.pt", small_data)
    lines = evaluation.stdout.strip().splitlines()
    assert re.fullmatch(r"tokenized BLEU \(fairseq, beam 5\): [0-9.]+", lines[0]), lines
    assert re.fullmatch(r"sacreBLEU \(detokenized\): [0-9.]+", lines[1]), lines
    hypotheses = lines_of(save_dir / "checkpoint_last.test.hyp.detok")
    assert len(hypotheses) == 40


def test_the_papers_sgd_recipe_trains_the_lstm_student(small_data, tmp_path):
    """train_lstm1.sh --sgd: the paper's LSTM-1 with plain SGD (lr 1.0, sentence-averaged gradients clipped to norm
    5), the teacher replaying SGD steps."""
    save_dir = tmp_path / "run"
    small = [f"--{part}-{size}" for part in ("encoder", "decoder") for size in ("embed-dim", "hidden-size")]
    result = script("train_lstm1.sh", "--loss", "l2t", "--sgd", "--data", small_data, "--save-dir", save_dir,
                    "--max-update", "5", "--teacher-interval", "2", "--unroll-steps", "2", "--max-tokens", "1000",
                    *[word for flag in small for word in (flag, "32")], "--decoder-out-embed-dim", "32")
    assert "done training" in result.stdout and re.search(r"\| lr 1 \|", result.stdout), result.stdout[-2000:]
    assert "'sentence_avg': True" in result.stdout and "'clip_norm': 5.0" in result.stdout
    records = [json.loads(line) for line in (save_dir / "teacher.jsonl").read_text().splitlines()]
    # teacher steps taken (an untrained student's candidates all score BLEU 0, so the gradient may vanish)
    assert [(r["update"], r["workers"], r["skipped"]) for r in records] == [(2, 1, False), (4, 1, False)]


def test_recipes_refuse_bad_flags(small_data, tmp_path):
    result = script("train_lstm1.sh", "--loss", "mle", "--data", small_data, check=False)
    assert result.returncode == 2 and result.stderr.strip() == "train.sh: error: --loss must be ce or l2t, got 'mle'"
    result = script("train_transformer.sh", "--sgd", "--data", small_data, check=False)
    assert result.returncode == 2 and "--sgd is the recipe of the LSTM students" in result.stderr
    result = script("train_transformer.sh", "--data", tmp_path, check=False)
    assert result.returncode == 2 and "no binarized data" in result.stderr


def test_the_readmes_cpu_smoke_run(small_data, tmp_path):
    """README's quickstart line for a CPU, as written, on the small split instead of the full one: it trains and
    the teacher steps at each of its refreshes."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    quickstart = text[text.index("## Quickstart"):]
    line = quickstart[quickstart.index("on a CPU in minutes"):].split("```")[1].strip()
    words = shlex.split(line)
    assert words[0] == "examples/iwslt14/train_transformer.sh" and "--cpu" in words
    save_dir = tmp_path / "run"
    result = script(os.path.basename(words[0]), *words[1:], "--data", small_data, "--save-dir", save_dir)
    assert "done training" in result.stdout
    records = [json.loads(line) for line in (save_dir / "teacher.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [10, 20, 30] and all(r["workers"] == 1 for r in records)
