#!/usr/bin/env bash
# The GPU checks, on a machine with a CUDA device and a python3 that holds a CUDA torch:
#
#     scripts/gpu_check.sh DATA_BIN OUT_DIR [WHEELS_DIR]
#
# 1. installs fairseq-fixed and this plugin into python3's environment, over its own torch (from WHEELS_DIR, a
#    folder of wheels, where the machine has no package index; scripts/setup.sh's dependencies, without torch);
# 2. runs the CUDA variants of the tests (pytest -k cuda): the hypergradient on the GPU against full autograd
#    and against the CPU, the replayed step against fairseq's real CUDA step, fairseq-train on the GPU in fp32,
#    --fp16 and --amp, Transformer and LSTM;
# 3. times one teacher step against one student step (scripts/bench_unroll.py --device cuda), for the toy
#    Transformer and for transformer_iwslt_de_en, the full IWSLT'14 recipe's student;
# 4. trains cross-entropy and l2t_dlf side by side (toy Transformer, the same flags and updates) and prints the
#    ratio of their wall-clock times.
# DATA_BIN is a binarized corpus (examples/multi30k/prepare.sh's bin/).  Each step's output goes to OUT_DIR; a
# step that fails is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=$1
OUT=$2
WHEELS=${3:-}
UPDATES=${UPDATES:-600}
TESTS=${TESTS:-cuda}  # pytest's -k: which tests step 2 runs
mkdir -p "$OUT"
failed=()
step() {  # step NAME COMMAND...: runs COMMAND, its output into OUT/NAME.log
    local name=$1
    shift
    echo "== $name: $*"
    local start=$SECONDS
    if "$@" >"$OUT/$name.log" 2>&1; then
        echo "   ok in $((SECONDS - start)) s"
    else
        echo "   FAILED in $((SECONDS - start)) s; the end of its log:"
        tail -n 30 "$OUT/$name.log"
        failed+=("$name")
    fi
}

install() {
    local pip=(python3 -m pip install --quiet --disable-pip-version-check --no-deps)
    if [ -n "$WHEELS" ]; then
        "${pip[@]}" --no-index "$WHEELS"/*.whl || return 1
    else
        "${pip[@]}" -r requirements.txt "fairseq-fixed==0.12.3.1" || return 1
    fi
    "${pip[@]}" --no-build-isolation -e . &&
        python3 -c "import torch, fairseq, l2t_fairseq; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, torch.cuda.get_device_name(), 'fairseq', fairseq.__version__)"
}
step install install || { echo "the install failed: nothing else can run"; exit 1; }
tail -n 1 "$OUT/install.log"

step tests python3 -m pytest -q -p no:cacheprovider tests -k "$TESTS" -rs

step bench_unroll_toy python3 scripts/bench_unroll.py "$DATA" --device cuda --steps 20 --max-tokens 4096
step bench_unroll_iwslt python3 scripts/bench_unroll.py "$DATA" --device cuda --steps 20 \
    --arch transformer_iwslt_de_en --max-tokens 4096
grep -h -E "^device|^\| " "$OUT"/bench_unroll_*.log

train() {  # train TASK CRITERION: UPDATES updates of the toy Transformer on the GPU, checkpoints and validation off
    local save
    save=$(mktemp -d)
    python3 -m fairseq_cli.train "$DATA" --user-dir l2t_fairseq --task "$1" --criterion "$2" \
        --arch transformer_l2t_toy --optimizer adam --adam-betas "(0.9, 0.98)" --lr 3e-3 --lr-scheduler inverse_sqrt \
        --warmup-updates 200 --max-tokens 4096 --max-update "$UPDATES" --seed 1 --save-dir "$save" \
        --no-save --disable-validation --log-format simple --log-interval 100
}
step train_cross_entropy train translation cross_entropy
step train_l2t_dlf train l2t_translation l2t_dlf
for criterion in cross_entropy l2t_dlf; do
    grep -h -o "done training in [0-9.]* seconds" "$OUT/train_$criterion.log" | sed "s/^/$criterion: /"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all GPU checks passed"
