#!/usr/bin/env bash
# The main job on a small built-in default: a synthetic parallel corpus, a tiny
# Transformer student taught by an L2T-DLF teacher, then fairseq-generate's BLEU.
# Usage: examples/toy/run.sh [OUT_DIR] [extra fairseq-train flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/toy}
shift || true
PY=${PYTHON:-python3}  # the active environment (make demo: .venv's)

"$PY" examples/toy/make_corpus.py --out "$OUT/corpus" --train 4000 --valid 200 --test 200
rm -rf "$OUT/bin"
"$PY" -m fairseq_cli.preprocess --source-lang src --target-lang tgt --trainpref "$OUT/corpus/train" \
    --validpref "$OUT/corpus/valid" --testpref "$OUT/corpus/test" --destdir "$OUT/bin" --workers 1 \
    > "$OUT/preprocess.log" 2>&1

"$PY" -m fairseq_cli.train "$OUT/bin" --user-dir l2t_fairseq --task l2t_translation --criterion l2t_dlf \
    --arch transformer_l2t_toy \
    --optimizer adam --lr 2e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 --max-tokens 2000 \
    --max-update 600 --teacher-interval 50 --unroll-steps 5 \
    --eval-bleu --eval-bleu-args '{"beam": 1}' --eval-tokenized-bleu \
    --save-dir "$OUT/checkpoints" --no-epoch-checkpoints --log-format simple --log-interval 50 \
    --cpu --seed 1 "$@" 2>&1 | tee "$OUT/train.log" | grep -E "train_inner|valid on|done training"

"$PY" -m fairseq_cli.generate "$OUT/bin" --user-dir l2t_fairseq --task l2t_translation \
    --path "$OUT/checkpoints/checkpoint_last.pt" --gen-subset test --beam 5 --batch-size 100 --cpu \
    > "$OUT/generate.log" 2>&1
grep "BLEU4" "$OUT/generate.log"
