"""Whether the teacher found the noise: the word types only corrupted targets hold, and their coefficients."""

import glob
import json
import os

import numpy as np
from fairseq.data import Dictionary, data_utils

from l2t_fairseq.benchmark.noise_report import TargetNoise, corrupted_lines, noise_lines
from l2t_fairseq.diagnostics import target_frequency


def test_the_corrupted_lines_are_renumbered_after_the_filter_dropped_pairs():
    assert corrupted_lines({"pairs": 6, "corrupted": [1, 4]}) == {1, 4}
    assert corrupted_lines({"pairs": 6, "corrupted": [1, 4], "dropped": [0, 4]}) == {0}


def test_noise_only_words_are_those_no_clean_target_holds(toy_data, tmp_path):
    data = tmp_path / "bin"
    os.symlink(toy_data, data)
    assert TargetNoise.of(str(data), None, None, None) is None  # no noise.json: clean data
    prefix = glob.glob(os.path.join(toy_data, "train.*-*.tgt.idx"))[0][:-len(".idx")]
    dictionary = Dictionary.load(os.path.join(toy_data, "dict.tgt.txt"))
    dataset = data_utils.load_indexed_dataset(prefix, dictionary)
    (tmp_path / "noise.json").write_text(json.dumps({"noise": "untranslated", "pairs": len(dataset),
                                                     "corrupted": [0, 1, 2]}))
    noise = TargetNoise.of(str(data), dictionary, prefix, target_frequency(dataset, len(dictionary)))
    clean = [t for line in range(3, len(dataset)) for t in dataset[line].tolist()]
    noisy = [t for line in range(3) for t in dataset[line].tolist()]
    assert set(noise.only.tolist()) == set(noisy) - set(clean) - set(range(dictionary.nspecial))
    assert noise.corrupted.sum() == len(noisy) and noise.clean.sum() == len(clean)
    assert noise.clean[dictionary.eos()] == len(dataset) - 3


def test_the_ratios_compare_the_noise_with_the_clean_side():
    # word types 0-4: 0 and 4 absent from the targets, 2 only in corrupted ones, 1 in both, 3 only in clean ones
    noise = TargetNoise(corrupted=[0, 1, 3, 0, 0], clean=[0, 3, 0, 1, 0], nspecial=0)
    phi = np.array([9.0, 1.0, 0.5, 1.5, 9.0])
    assert noise.only.tolist() == [2]
    assert noise.word_ratio(phi) == 0.5 / 1.25
    assert noise.token_ratio(phi) == ((1.0 + 3 * 0.5) / 4) / ((3 * 1.0 + 1.5) / 4)
    assert noise.token_ratio(np.ones(5)) == 1.0
    rows = {"1": [({"update": 10}, phi), ({"update": 20}, phi * 2)]}
    text = "\n".join(noise_lines(rows, noise, [f"w{i}" for i in range(5)]))
    assert "only in corrupted training targets: 1 (e.g. `w2`)" in text
    assert "| 1 | 0.400 | 0.400 | 0.556 | 0.556 | 20 |" in text
