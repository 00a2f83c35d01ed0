"""Can the teacher learn? A planted signal: junk words follow nouns in 60% of the training targets only.

A cross-entropy student learns to emit them and loses dev BLEU (the dev and test targets have none); the best
loss gives them no weight.  The teacher at its defaults (the real steps replayed, alpha 0.5; K = U = 10 for
this small run of 400 updates, 39 teacher steps) must find that: its coefficients for the junk words end
below half the other target words' mean, and its student's dev BLEU ends above the cross-entropy student's of
the same seed.
"""

import os
import re

import pytest
from conftest import PLUGIN, REPO, preprocess, run

from l2t_fairseq import teacher_log

JUNK = ("J0", "J1", "J2")
UPDATES = 400


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("planted")
    run("python", os.path.join(REPO, "examples", "toy", "make_corpus.py"), "--out", corpus, "--train", "4000",
        "--valid", "200", "--test", "200", "--junk-rate", "0.6", "--junk-words", len(JUNK))
    return preprocess(corpus, corpus / "bin")


def train(data, save_dir, *loss):
    """UPDATES updates of the demo's student; returns the dev BLEU (greedy) of the last validation."""
    result = run(
        "fairseq-train", data, "--user-dir", PLUGIN, *loss, "--arch", "transformer_l2t_toy", "--optimizer", "adam",
        "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--max-tokens", "2000",
        "--max-update", UPDATES, "--save-dir", save_dir, "--no-epoch-checkpoints", "--log-format", "simple",
        "--cpu", "--seed", "1", "--eval-bleu", "--eval-bleu-args", '{"beam": 1}', "--eval-tokenized-bleu",
        "--validate-interval-updates", "100", "--validate-interval", "1000",
    )
    return float(re.findall(r"valid on 'valid' subset .*?\| bleu ([\d.]+)", result.stdout)[-1])


def test_the_teacher_learns_to_ignore_planted_junk(planted, tmp_path):
    from fairseq.data import Dictionary

    cross_entropy = train(planted, tmp_path / "ce", "--task", "translation", "--criterion", "cross_entropy")
    l2t = train(planted, tmp_path / "l2t", "--task", "l2t_translation", "--criterion", "l2t_dlf",
                "--teacher-interval", "10", "--unroll-steps", "10")
    dictionary = Dictionary.load(str(planted / "dict.tgt.txt"))
    junk = [dictionary.index(word) for word in JUNK]
    assert all(index != dictionary.unk() for index in junk)
    others = [i for i in range(dictionary.nspecial, len(dictionary)) if i not in junk]
    record, phi = teacher_log.coefficients(str(tmp_path / "l2t" / "teacher.jsonl"))[-1]  # the last refresh's
    assert record == teacher_log.read(tmp_path / "l2t" / "teacher.jsonl")[-1]
    junk_mean = sum(phi[i] for i in junk) / len(junk)
    others_mean = sum(phi[i] for i in others) / len(others)
    assert junk_mean < 0.5 * others_mean, (junk_mean, others_mean)
    assert l2t > cross_entropy, (l2t, cross_entropy)
