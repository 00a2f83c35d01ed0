#!/usr/bin/env bash
# Creates .venv with torch (CPU), fairseq-fixed and l2t-fairseq; idempotent.
#
# fairseq-fixed is the maintained fork of fairseq 0.12 that installs on Python
# 3.11 (same `fairseq` import).  It is built without build isolation and
# without its dependencies: its metadata asks for torchaudio, whose releases
# pin other torch versions and would pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
FAIRSEQ_VERSION=0.12.3.1

if [ -f "$VENV/.l2t-ready" ] && [ "$VENV/.l2t-ready" -nt requirements.txt ]; then
    exit 0
fi
python3 -m venv "$VENV"
pip="$VENV/bin/python -m pip install --quiet --disable-pip-version-check"
$pip "torch==$TORCH_VERSION"
$pip -r requirements.txt
$pip --no-deps --no-build-isolation "fairseq-fixed==$FAIRSEQ_VERSION"
$pip --no-deps -e .
"$VENV/bin/python" -c "import fairseq, l2t_fairseq; print('fairseq', fairseq.__version__, 'ready in $VENV')"
touch "$VENV/.l2t-ready"
