"""``SAVE_DIR/teacher.jsonl``: one JSON record per teacher refresh (format: ``docs/teacher-log.md``)."""

import json
import os

from l2t_fairseq.whole_files import write_whole

TEACHER_LOG = "teacher.jsonl"


def read(path):
    """The records of a ``teacher.jsonl`` file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append(save_dir, record):
    os.makedirs(save_dir, exist_ok=True)
    with open(os.path.join(save_dir, TEACHER_LOG), "a") as log:
        log.write(json.dumps(record) + "\n")


def truncate(save_dir, last_update):
    """Drops the records after ``last_update``: a run resumed from an older checkpoint logs them again."""
    path = os.path.join(save_dir, TEACHER_LOG)
    if not os.path.isfile(path):
        return
    kept = [record for record in read(path) if record["update"] <= last_update]
    write_whole(path, "".join(json.dumps(record) + "\n" for record in kept))


def coefficients(save_dir):
    """Phi after each refresh logged in ``save_dir``, as lists, in order."""
    return [record["phi"] for record in read(os.path.join(save_dir, TEACHER_LOG))]
