"""The teacher's log: compact lines, the whole Phi of some refreshes in a float16 array, resumes, older logs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from l2t_fairseq import teacher_log

VOCAB = 40_000  # more words than any dictionary the benchmarks use: a line that held a vector of them would show
LINE_BYTES = 2_048  # the most a refresh may add to teacher.jsonl
MEASURES = {"state": [0.5, 0.25, 0.2], "teacher_digest": ["937c178acd33de3e"], "seconds": 1.5, "workers": 1,
            "skipped": False, "skipped_steps": 0, "dev_expected_bleu": 0.25, "hypergrad_norm": 0.01,
            "lookahead_gain": 1e-4, "replay_gap": 1e-6}


def refreshes(save_dir, updates, keep=lambda update: True):
    frequency = torch.randint(0, 50, (VOCAB,))
    phis = []
    for update in updates:
        phi = torch.rand(VOCAB, generator=torch.Generator().manual_seed(update)) + 0.05
        teacher_log.append(save_dir, {"update": update, **MEASURES}, phi, frequency, keep_phi=keep(update))
        phis.append(phi)
    return phis


def test_a_refresh_adds_a_short_line_and_at_most_one_float16_row(tmp_path):
    refreshes(tmp_path, [10, 20, 30], keep=lambda update: update != 20)
    log = str(tmp_path / teacher_log.TEACHER_LOG)
    assert os.path.getsize(log) <= 3 * LINE_BYTES
    assert os.path.getsize(teacher_log.phi_path(log)) <= 2 * 2 * VOCAB + 128  # two rows kept, and the header
    records = teacher_log.read(log)
    assert [r.get("phi_row") for r in records] == [0, None, 1]
    assert all(len(r["phi_digest"]["largest"]) == teacher_log.EXTREMES and r["phi_bands"] for r in records)


def test_the_rows_are_the_coefficients_of_their_refreshes(tmp_path):
    phis = refreshes(tmp_path, [10, 20, 30], keep=lambda update: update != 20)
    kept = teacher_log.coefficients(str(tmp_path / teacher_log.TEACHER_LOG))
    assert [r["update"] for r, _ in kept] == [10, 30]
    for (record, row), phi in zip(kept, [phis[0], phis[2]]):
        np.testing.assert_allclose(row, phi.numpy(), rtol=1e-3)
        assert record["phi_digest"]["largest"][0] == [int(phi.argmax()), round(float(phi.max()), 5)]


def test_a_resume_drops_the_later_lines_and_their_rows(tmp_path):
    refreshes(tmp_path, [10, 20, 30, 40], keep=lambda update: update != 20)
    teacher_log.truncate(tmp_path, 25)
    log = str(tmp_path / teacher_log.TEACHER_LOG)
    assert [r["update"] for r in teacher_log.read(log)] == [10, 20]
    assert teacher_log.read_phi(log).shape == (1, VOCAB)
    refreshes(tmp_path, [30])
    assert [r["update"] for r, _ in teacher_log.coefficients(log)] == [10, 30]


@pytest.mark.parametrize("lines, kept", [(3, [0, 2]), (12, [0, 10, 11])])
def test_an_older_log_is_compacted(tmp_path, lines, kept):
    """scripts/compact_teacher_logs.py: the older form held every refresh's whole Phi in its line."""
    log = tmp_path / "l2t_dlf-seed1.teacher.jsonl"
    phis = [np.round(np.random.default_rng(i).uniform(0.05, 0.5, 500), 5) for i in range(lines)]
    older = [{"update": 10 * (i + 1), "state": [0.1, 0.2, 0.3], "phi_bands": {"1-100": {"mean": 0.2}},
              "phi": phi.tolist()} for i, phi in enumerate(phis)]
    log.write_text("".join(json.dumps(r) + "\n" for r in older))
    command = [sys.executable, os.path.join(REPO, "scripts", "compact_teacher_logs.py"), str(log)]
    assert "compacted" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    records = teacher_log.read(str(log))
    assert [{k: v for k, v in r.items() if k in older[0]} for r in records] == [
        {k: v for k, v in r.items() if k != "phi"} for r in older]
    rows = teacher_log.coefficients(str(log))
    assert [r["update"] for r, _ in rows] == [older[i]["update"] for i in kept]
    for (_, row), i in zip(rows, kept):
        np.testing.assert_allclose(row, phis[i], rtol=1e-3)
    assert "already compact" in subprocess.run(command, check=True, capture_output=True, text=True).stdout
