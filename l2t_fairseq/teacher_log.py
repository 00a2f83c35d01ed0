"""What each teacher refresh logs (format: ``docs/teacher-log.md``), compact enough to keep with a run's records.

- ``SAVE_DIR/teacher.jsonl``: one JSON line per refresh: the state, the
  measures, ``Phi``'s bands by target-word frequency and a digest of ``Phi``
  (its 10 largest and smallest coefficients).
- ``SAVE_DIR/teacher_phi.npy``: the whole ``Phi`` vector of some refreshes
  (``--phi-log-every``), float16, one row each; a line names its row
  (``phi_row``).  Row ``i`` belongs to the ``i``-th line that has one.
"""

import hashlib
import io
import json
import os

import numpy as np

from l2t_fairseq.diagnostics import phi_bands
from l2t_fairseq.whole_files import replacing, write_whole

TEACHER_LOG = "teacher.jsonl"
EXTREMES = 10  # the digest's largest and smallest coefficients


def phi_path(log_path):
    """The array file beside a log: ``teacher.jsonl`` -> ``teacher_phi.npy``."""
    return log_path[: -len(".jsonl")] + "_phi.npy"


def read(path):
    """The records of a ``teacher.jsonl`` file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_phi(log_path):
    """The logged ``Phi`` rows of a log, float32, shape (rows, |V|) (none: shape (0, 0))."""
    path = phi_path(log_path)
    return np.load(path).astype(np.float32) if os.path.isfile(path) else np.zeros((0, 0), np.float32)


def coefficients(log_path):
    """(record, Phi) of each refresh of the log whose whole ``Phi`` was kept, in order."""
    rows = read_phi(log_path)
    return [(record, rows[record["phi_row"]]) for record in read(log_path) if "phi_row" in record]


def digest(phi):
    """The ``EXTREMES`` largest and smallest coefficients, as [word index, value] pairs (a tensor or array)."""
    phi = np.asarray(phi, dtype=np.float64)
    order = np.argsort(phi, kind="stable")
    pick = lambda indices: [[int(i), round(float(phi[i]), 5)] for i in indices]  # noqa: E731
    return {"largest": pick(order[::-1][:EXTREMES]), "smallest": pick(order[:EXTREMES])}


def kept_row(phi):
    """``Phi`` as the array file keeps it (float16) and the hash of that row, which its line records."""
    row = np.asarray(phi, dtype=np.float16)
    return row, hashlib.sha256(row[None].tobytes()).hexdigest()[:16]


def write_rows(log_path, rows):
    """The array file of a log, whole, float16."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows, dtype=np.float16))
    with replacing(phi_path(log_path)) as temporary, open(temporary, "wb") as f:
        f.write(buffer.getvalue())


def append(save_dir, record, phi, frequency, keep_phi):
    """Logs a refresh: ``record`` with ``Phi``'s bands (``frequency``: of each target word in the training data) and
    digest, and, if ``keep_phi``, ``Phi`` as the array file's next row."""
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, TEACHER_LOG)
    record = {**record, "phi_bands": phi_bands(phi, frequency), "phi_digest": digest(phi)}
    if keep_phi:
        rows = read_phi(path)
        row, record["phi_sha256"] = kept_row(phi)
        record["phi_row"] = len(rows)
        write_rows(path, np.concatenate([rows.astype(np.float16), row[None]]) if len(rows) else row[None])
    with open(path, "a") as log:
        log.write(json.dumps(record) + "\n")


def truncate(save_dir, last_update):
    """Drops the records (and rows) after ``last_update``: a run resumed from an older checkpoint logs them again."""
    path = os.path.join(save_dir, TEACHER_LOG)
    if not os.path.isfile(path):
        return
    kept = [record for record in read(path) if record["update"] <= last_update]
    write_whole(path, "".join(json.dumps(record) + "\n" for record in kept))
    if os.path.isfile(phi_path(path)):
        write_rows(path, read_phi(path)[: sum("phi_row" in record for record in kept)])
