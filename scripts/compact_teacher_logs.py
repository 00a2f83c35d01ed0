"""Rewrites teacher logs of the older form, whose every line held the whole Phi vector, in the compact form
(``l2t_fairseq.teacher_log``): each line keeps its state, measures and Phi bands and gains Phi's digest; the whole
Phi of the 1st, (n+1)-th, (2n+1)-th... and the last refresh goes to the float16 array file beside the log.

    python scripts/compact_teacher_logs.py [--every 10] LOG.jsonl...

A log already compact is left as it is.  The rows kept are the older form's values (5 decimals) in float16.
"""

import argparse
import json
import sys

import numpy as np

from l2t_fairseq import teacher_log
from l2t_fairseq.whole_files import write_whole


def compact(path, every):
    records = teacher_log.read(path)
    if not records or "phi" not in records[0]:
        return False
    rows = []
    for index, record in enumerate(records):
        phi = np.asarray(record.pop("phi"), dtype=np.float64)
        record["phi_digest"] = teacher_log.digest(phi)
        if index % every == 0 or index == len(records) - 1:
            row, record["phi_sha256"] = teacher_log.kept_row(phi)
            record["phi_row"] = len(rows)
            rows.append(row)
    teacher_log.write_rows(path, np.stack(rows))
    write_whole(path, "".join(json.dumps(record) + "\n" for record in records))
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="teacher.jsonl files (a run's, or a benchmark's records)")
    parser.add_argument("--every", type=int, default=10, help="keep the whole Phi of every n-th refresh (and the last)")
    args = parser.parse_args(argv)
    for path in args.logs:
        print(f"{path}: {'compacted' if compact(path, args.every) else 'already compact'}")


if __name__ == "__main__":
    sys.exit(main())
