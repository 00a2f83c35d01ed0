#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA device and a Python that holds a CUDA torch:
#
#     scripts/gpu_check.sh DATA_BIN OUT_DIR [--wheels DIR] [--cpu]
#
# 1. installs fairseq-fixed and this plugin into the active Python's environment ($PYTHON, by default python3), over
#    its own torch, unless both already import there: from the package index, or from --wheels DIR, a folder of
#    wheels (fairseq-fixed and what it needs besides torch; README, "Install on a GPU machine");
# 2. runs scripts/gpu_check.py DATA_BIN OUT_DIR: versions, the CUDA tests, the cost table (cross-entropy, online and
#    frozen teacher; three students; fp32 and --fp16), U = 100 against U = 20, a resume from a checkpoint saved
#    inside a window, fp16 overflows; one markdown report, OUT_DIR/report.md (docs/gpu.md says how to read it).
# DATA_BIN is a binarized corpus (examples/multi30k/prepare.sh's bin/).  --cpu: the same steps on the CPU at a toy
# size (what tests/test_scripts.py runs, so that the script cannot rot).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${1:?usage: scripts/gpu_check.sh DATA_BIN OUT_DIR [--wheels DIR] [--cpu]}
OUT=${2:?usage: scripts/gpu_check.sh DATA_BIN OUT_DIR [--wheels DIR] [--cpu]}
shift 2
WHEELS="" CHECK=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --wheels) WHEELS=$2; shift 2 ;;
        --cpu) CHECK+=(--cpu); shift ;;
        *) echo "gpu_check.sh: error: unknown argument $1" >&2; exit 2 ;;
    esac
done

if ! "$PY" -c "import fairseq, l2t_fairseq" 2>/dev/null; then
    pip=("$PY" -m pip install --quiet --disable-pip-version-check --no-deps)
    if [[ -n "$WHEELS" ]]; then
        "${pip[@]}" --no-index "$WHEELS"/*.whl
    else
        "${pip[@]}" -r requirements.txt "fairseq-fixed==0.12.3.1"
    fi
    "${pip[@]}" --no-build-isolation -e .
fi
exec "$PY" scripts/gpu_check.py "$DATA" "$OUT" "${CHECK[@]}"
