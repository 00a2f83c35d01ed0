"""The cost benchmarks of scripts/ time what they say they time."""

import os
import subprocess
import sys

from conftest import REPO


def test_bench_unroll_times_a_teacher_step_at_the_defaults(toy_data):
    """One refresh through U = 3 real steps (--unroll-start past, the default): the script fails if the refresh
    took no teacher step, so the row it prints is the cost of one."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench_unroll.py"), str(toy_data), "--steps", "3",
         "--max-tokens", "2000"], capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = [line for line in result.stdout.splitlines() if line.startswith("| 3 |")]
    assert len(row) == 1, result.stdout
    student_step, refresh = (float(cell) for cell in row[0].strip("|").split("|")[2:4])
    assert refresh > student_step > 0
    assert not os.path.exists(os.path.join(REPO, "checkpoints")), "it logged into the repository"


def test_bench_teacher_update_times_teacher_steps_at_the_defaults(toy_data):
    """Two refreshes, each replaying the same window of 2 real steps: the script fails unless each took a teacher
    step."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench_teacher_update.py"), str(toy_data), "--unroll-steps",
         "2", "--repeats", "2"], capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ratio = float(result.stdout.split("teacher update / student step:")[1])
    assert ratio > 1
    assert not os.path.exists(os.path.join(REPO, "checkpoints")), "it logged into the repository"


def test_bench_cost_divides_each_pinned_run_by_its_unpinned_twin(toy_data):
    """--kernels pinned unpinned: cross-entropy trained under the benchmark's pinned kernels and under the machine's
    own, the ratio of their seconds per update in the pinned row."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench_cost.py"), str(toy_data), "--rows", "cross_entropy",
         "--kernels", "pinned", "unpinned", "--updates", "30", "--after", "10", "--max-tokens", "2000"],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[3].strip(): line.split("|") for line in result.stdout.splitlines()
            if line.startswith("| toy |")}
    assert set(rows) == {"pinned", "unpinned"} and rows["unpinned"][9].strip() == "-"
    pinned, unpinned = float(rows["pinned"][5]), float(rows["unpinned"][5])
    assert abs(float(rows["pinned"][9]) - pinned / unpinned) < 2e-3  # the table's seconds are rounded


def test_bench_cost_takes_each_repeated_runs_twins_from_its_own_repetition():
    """--kernels pinned unpinned pinned unpinned: the second pinned run is divided by the second unpinned run (not
    the first), and each run by the cross-entropy run of its own repetition."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cost", os.path.join(REPO, "scripts", "bench_cost.py"))
    bench_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_cost)

    def result(kernels, row, steady):
        return {"student": "toy", "precision": "fp32", "kernels": kernels, "row": row, "steady": steady,
                "between": steady, "peak_mib": 1000.0}

    results = [result("pinned", "cross_entropy", 1.0), result("pinned", "l2t_dlf", 3.0),
               result("unpinned", "cross_entropy", 2.0), result("unpinned", "l2t_dlf", 4.0),
               result("pinned", "cross_entropy", 0.9), result("pinned", "l2t_dlf", 1.8),
               result("unpinned", "cross_entropy", 1.0), result("unpinned", "l2t_dlf", 5.0)]
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in bench_cost.table(results).splitlines()[2:]]
    assert [row[5] for row in cells] == ["1.00", "3.00", "1.00", "2.00", "1.00", "2.00", "1.00", "5.00"]  # x CE
    assert [row[8] for row in cells] == ["0.500", "0.750", "-", "-", "0.900", "0.360", "-", "-"]  # pinned x unpinned


def test_the_gpu_check_runs_its_steps_on_the_cpu(toy_data, tmp_path):
    """scripts/gpu_check.sh --cpu: every step of the GPU check at a toy size, one report; the CUDA tests skip here
    (tests/test_replay.py's CPU retry stands in for the fp16 overflows)."""
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run([os.path.join(REPO, "scripts", "gpu_check.sh"), str(toy_data), str(tmp_path), "--cpu"],
                            capture_output=True, text=True, cwd=REPO, env=env)
    report = (tmp_path / "report.md").read_text()
    assert result.returncode == 0, report + result.stderr[-3000:]
    for title in ("Versions", "CUDA tests", "Cost per update", "A long unroll", "Resume from a checkpoint",
                  "fp16 overflows"):
        assert f"## {title}" in report, report
    assert report.rstrip().endswith("All steps passed.")
    rows = [line for line in report.splitlines() if line.startswith("| toy | fp32 |")]
    assert [row.split("|")[4].strip() for row in rows] == ["cross_entropy", "l2t_dlf", "l2t_dlf_frozen"]
    assert "bit for bit the uninterrupted run's" in report and "1 passed" in report
