"""Noisy parallel data and how much of a target copies its source."""

import pytest

from l2t_fairseq.noise import copy_share, corrupt, parse_noise


def test_copy_share_counts_the_targets_tokens_found_in_the_source():
    assert copy_share("ein hund läuft .", "ein hund läuft .") == 1.0
    assert copy_share("ein hund läuft .", "a dog runs .") == 0.25  # only "."
    assert copy_share("a b", "") == 0.0


def test_corrupt_picks_its_share_of_pairs_by_seed():
    sources, targets = [f"s{i}" for i in range(50)], [f"t{i}" for i in range(50)]
    copied, chosen = corrupt(sources, targets, "untranslated", 0.2, seed=1)
    assert len(chosen) == 10 and all(copied[i] == sources[i] for i in chosen)
    assert corrupt(sources, targets, "untranslated", 0.2, seed=1) == (copied, chosen)
    moved, chosen = corrupt(sources, targets, "misaligned", 0.2, seed=1)
    assert all(moved[i] != targets[i] and moved[i] in targets for i in chosen)
    assert [t for i, t in enumerate(moved) if i not in chosen] == [t for i, t in enumerate(targets) if i not in chosen]


@pytest.mark.parametrize("text", ["copied:0.2", "untranslated:0", "misaligned:x", "misaligned"])
def test_parse_noise_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match=f"--noise {text}: "):
        parse_noise(text)
    assert parse_noise("misaligned:0.2") == ("misaligned", 0.2)
