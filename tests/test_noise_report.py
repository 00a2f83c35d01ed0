"""Whether the teacher found the noise: the word types only corrupted targets hold, and their coefficients."""

import glob
import json
import os

import numpy as np
import torch
from fairseq.data import Dictionary, data_utils

from l2t_fairseq.benchmark.noise_report import corrupted_lines, noise_lines, noise_only_words, ratio


def test_the_corrupted_lines_are_renumbered_after_the_filter_dropped_pairs():
    assert corrupted_lines({"pairs": 6, "corrupted": [1, 4]}) == {1, 4}
    assert corrupted_lines({"pairs": 6, "corrupted": [1, 4], "dropped": [0, 4]}) == {0}


def test_noise_only_words_are_those_no_clean_target_holds(toy_data, tmp_path):
    data = tmp_path / "bin"
    os.symlink(toy_data, data)
    assert noise_only_words(str(data), None, None) is None  # no noise.json: clean data
    prefix = glob.glob(os.path.join(toy_data, "train.*-*.tgt.idx"))[0][:-len(".idx")]
    dictionary = Dictionary.load(os.path.join(toy_data, "dict.tgt.txt"))
    dataset = data_utils.load_indexed_dataset(prefix, dictionary)
    (tmp_path / "noise.json").write_text(json.dumps({"noise": "untranslated", "pairs": len(dataset),
                                                     "corrupted": [0, 1, 2]}))
    words = noise_only_words(str(data), dictionary, prefix)
    clean = {t for line in range(3, len(dataset)) for t in dataset[line].tolist()}
    noisy = {t for line in range(3) for t in dataset[line].tolist()} - set(range(dictionary.nspecial))
    assert set(words.tolist()) == noisy - clean


def test_the_ratio_compares_noise_words_with_the_other_target_words():
    frequency = torch.tensor([0, 5, 5, 5, 0])
    phi = np.array([9.0, 1.0, 0.5, 1.5, 9.0])
    assert ratio(phi, np.array([2]), frequency) == 0.5 / 1.25
    rows = {"1": [({"update": 10}, phi), ({"update": 20}, phi * 2)]}
    text = "\n".join(noise_lines(rows, np.array([2]), [f"w{i}" for i in range(5)], frequency))
    assert "only in corrupted training targets: 1 (e.g. `w2`)" in text and "| 1 | 0.400 | 0.400 | 20 |" in text
