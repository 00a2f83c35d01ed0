"""The teaching code's behaviour, pinned: a small L2T-DLF run gives the teacher.jsonl measures, coefficients and
student weights recorded in ``tests/data/behaviour.json``.

A change meant to leave behaviour alone (a refactor) must pass this test unchanged.  A change meant to alter
behaviour records the file again, deliberately, and says why:
``L2T_RECORD_BEHAVIOUR=1 python -m pytest tests/test_behaviour.py``.
"""

import json
import os

import numpy as np
import pytest
import torch
from conftest import REPO, l2t_train
from fairseq import checkpoint_utils

from l2t_fairseq import teacher_log

RECORD = os.path.join(REPO, "tests", "data", "behaviour.json")
MEASURES = ("update", "state", "dev_expected_bleu", "hypergrad_norm", "lookahead_gain", "replay_gap", "skipped_steps")
# the Adam student's past steps replayed, micro-batches, dropout, the lookahead gain, teacher-measured dev BLEU
FLAGS = ("--max-update", 45, "--teacher-interval", 15, "--unroll-steps", 4, "--update-freq", 2,
         "--lookahead-gain-every", 2, "--disable-validation", "--teacher-dev-max-tokens", 512)
RELATIVE = 1e-4  # float sums over a few thousand weights, one thread, on another x86 CPU with the same torch
# the replay's distance to the student's weights is rounding alone (the Adam unroll replays the real steps): its
# relative error between CPUs is ~1e-2 (4.38e-5 here, 4.45e-5 on another x86 CPU), so it is pinned to its scale, a
# thousandth of what an unroll that drops a moment gives (23-32)
ROUNDING = {"replay_gap": 1e-4}


def fingerprint(save_dir):
    """What the run did: each refresh's measures and coefficients, and the student's final weights."""
    log = str(save_dir / "teacher.jsonl")
    refreshes = [{**{k: record[k] for k in MEASURES if k in record},
                  "phi_bands": {name: [band["mean"], band["max"]] for name, band in record["phi_bands"].items()}}
                 for record in teacher_log.read(log)]
    phi = [[float(row.astype(np.float64).sum()), float(row.max())] for _, row in teacher_log.coefficients(log)]
    model = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))["model"]
    # sums of magnitudes: a plain sum can nearly cancel, and then its relative error means nothing
    weights = {name: [float(w.double().abs().sum()), float(w.double().square().sum())] for name, w in model.items()
               if w.is_floating_point()}
    return {"refreshes": refreshes, "phi": phi, "weights": weights}


def assert_close(got, expected, where, absolute=1e-7):
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}", ROUNDING.get(key, absolute))
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, f"{where}[{i}]", absolute)
    else:
        assert got == pytest.approx(expected, rel=RELATIVE, abs=absolute), where


def test_a_small_run_behaves_as_recorded(toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # another thread count sums in another order
    l2t_train(toy_data, tmp_path, *FLAGS)
    got = fingerprint(tmp_path)
    if os.environ.get("L2T_RECORD_BEHAVIOUR"):
        os.makedirs(os.path.dirname(RECORD), exist_ok=True)
        with open(RECORD, "w") as f:
            json.dump({"flags": [str(flag) for flag in FLAGS], "torch": torch.__version__, **got}, f, indent=1)
    with open(RECORD) as f:
        recorded = json.load(f)
    assert recorded["flags"] == [str(flag) for flag in FLAGS], "the flags changed: record the file again"
    assert len(got["refreshes"]) == 2
    assert_close(got, {k: recorded[k] for k in ("refreshes", "phi", "weights")}, "run")
