#!/usr/bin/env bash
# Trains one student of the paper's Table 3 on IWSLT'14 de-en with cross-entropy or L2T-DLF.
# Usage: examples/iwslt14/train.sh STUDENT [--loss ce|l2t] [--sgd] [--data DIR] [--save-dir DIR] [extra fairseq-train flags]
#   STUDENT: lstm1 | lstm2 | transformer (the full split, GPU) or small (the small CPU split, under 20 minutes)
#   --sgd: the paper's optimizer for the LSTM students: plain SGD on sentence-averaged gradients clipped to norm 5,
#   lr 1.0 halved whenever dev BLEU stops improving (with l2t_dlf's default loss scale the same learning rate fits
#   both losses). Any fairseq data works with --data, e.g. Multi30k from examples/multi30k/prepare.sh.
# Called by train_lstm1.sh, train_lstm2.sh, train_transformer.sh and train_small.sh.  Runs in the active Python
# environment (PYTHON, by default python3: the one where fairseq and this plugin are installed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
STUDENT=${1:?usage: train.sh lstm1|lstm2|transformer|small [--loss ce|l2t] [--data DIR] [--save-dir DIR] ...}
shift
LOSS=l2t DATA=data/iwslt14/bin SAVE_DIR="" SGD=""
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --loss) LOSS=$2; shift 2 ;;
        --sgd) SGD=1; shift ;;
        --data) DATA=$2; shift 2 ;;
        --save-dir) SAVE_DIR=$2; shift 2 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done

case "$STUDENT" in
    lstm1 | lstm2)
        LAYERS=${STUDENT#lstm}
        MODEL=(--arch lstm --encoder-layers "$LAYERS" --decoder-layers "$LAYERS" --encoder-embed-dim 256
               --encoder-hidden-size 256 --decoder-embed-dim 256 --decoder-hidden-size 256
               --decoder-out-embed-dim 256 --dropout 0.2 --optimizer adam --lr 1e-3 --lr-scheduler inverse_sqrt
               --warmup-updates 1000 --clip-norm 1.0 --max-tokens 4096 --max-update 40000) ;;
    transformer)
        MODEL=(--arch transformer_iwslt_de_en --share-decoder-input-output-embed --optimizer adam
               --adam-betas "(0.9, 0.98)" --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 4000 --dropout 0.3
               --weight-decay 0.0001 --max-tokens 4096 --max-update 50000) ;;
    small)
        [[ "$DATA" == data/iwslt14/bin ]] && DATA=runs/iwslt14-small/bin
        [[ -d "$DATA" ]] || examples/iwslt14/prepare.sh --shared ../shared/data/iwslt14 --out "$(dirname "$DATA")"
        MODEL=(--arch transformer_l2t_toy --optimizer adam --adam-betas "(0.9, 0.98)" --lr 3e-3
               --lr-scheduler inverse_sqrt --warmup-updates 100 --max-tokens 4096 --max-update 800
               --validate-interval 1000 --validate-interval-updates 200 --max-valid-steps 4 --cpu) ;;
    *) echo "train.sh: error: unknown student '$STUDENT' (lstm1, lstm2, transformer or small)" >&2; exit 2 ;;
esac
if [[ -n "$SGD" ]]; then
    [[ "$STUDENT" == lstm* ]] || { echo "train.sh: error: --sgd is the recipe of the LSTM students" >&2; exit 2; }
    # as LSTM translation models were trained with SGD: gradients summed over each sentence's words and averaged
    # over sentences (--sentence-avg; per-token averaging makes lr 1.0 about |y| times smaller), clipped to norm 5
    MODEL+=(--optimizer sgd --lr 1.0 --lr-scheduler reduce_lr_on_plateau --lr-shrink 0.5 --warmup-updates 0
            --sentence-avg --clip-norm 5.0)
fi
case "$LOSS" in
    ce) OBJECTIVE=(--task translation --criterion cross_entropy) ;;
    l2t) OBJECTIVE=(--task l2t_translation --criterion l2t_dlf) ;;
    *) echo "train.sh: error: --loss must be ce or l2t, got '$LOSS'" >&2; exit 2 ;;
esac
[[ -f "$DATA/dict.en.txt" ]] || { echo "train.sh: error: --data $DATA: no binarized data (run examples/iwslt14/prepare.sh)" >&2; exit 2; }
SAVE_DIR=${SAVE_DIR:-runs/iwslt14-$STUDENT-$LOSS${SGD:+-sgd}}

"${PYTHON:-python3}" -m fairseq_cli.train "$DATA" --user-dir l2t_fairseq "${OBJECTIVE[@]}" "${MODEL[@]}" \
    --eval-bleu --eval-bleu-args '{"beam": 1}' --eval-tokenized-bleu --eval-bleu-remove-bpe \
    --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --log-format simple --log-interval 50 --seed 1 "${EXTRA[@]}"
echo "checkpoints in $SAVE_DIR; evaluate with: examples/iwslt14/evaluate.sh $SAVE_DIR/checkpoint_best.pt $DATA"
