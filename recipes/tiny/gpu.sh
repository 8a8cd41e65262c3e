#!/usr/bin/env bash
# The tiny models' GPU piece: one command that continues both stages from the bundle on a CUDA GPU (H100/H200,
# about 9 minutes of wall time) and writes where they stand against the bars as JSON.
#   bash recipes/tiny/gpu.sh [RUN_DIR]        (default outputs/tiny-gpu; resumable: re-running continues)
# Stage I: from the bundle (STAGE1_FROM: a piece's transformer folder instead)
#   onto the full motion mix (pans at every shipped speed, zooms, rotations), batch S1_BATCH, with an EMA.
# Stage II: from the bundle, the anchor curriculum: crops of S2_SIZE px (>= 256) at the shipped speeds, weaker
#   references (degraded harder than Stage I's output, so the input image's own detail is worth fetching from the
#   anchor), batch S2_BATCH, with an EMA.
# Both train side by side for MINUTES each (or STEPS steps, whichever comes first), then
#   RUN_DIR/gains.json   the direction count on DIRECTION_CLIPS held-out pans, the oracle gain over bicubic on
#                        PHOTO_CLIPS held-out photographs, the anchor's gain on their last third, the worst clip —
#                        the new checkpoints beside the bundled ones (python -m recipes.tiny.probes.gains)
#   RUN_DIR/bundle/      a candidate bundle (stage1/, stage2/); copy it over src/swifti2v/weights/tiny only when
#                        the bars in docs/results.md hold
# A CPU check of the whole path (the test tier runs it): STEPS=2 S1_BATCH=1 S2_BATCH=1 S2_SIZE=64 PRECISION=no
#   NUM_WORKERS=0 DIRECTION_CLIPS=1 PHOTO_CLIPS=1 GAIN_SIZE="64 64" EXTRA="--set data.bank=4" bash recipes/tiny/gpu.sh DIR
set -euo pipefail
RUN=${1:-outputs/tiny-gpu}
MINUTES=${MINUTES:-6}
STEPS=${STEPS:-1000000}
S1_BATCH=${S1_BATCH:-32}
S2_BATCH=${S2_BATCH:-16}
S2_SIZE=${S2_SIZE:-256}
PRECISION=${PRECISION:-bf16}
NUM_WORKERS=${NUM_WORKERS:-6}
SAVE_EVERY=${SAVE_EVERY:-200}
DIRECTION_CLIPS=${DIRECTION_CLIPS:-24}
PHOTO_CLIPS=${PHOTO_CLIPS:-4}
GAIN_SIZE=${GAIN_SIZE:-288 512}
STAGE1_FROM=${STAGE1_FROM-}
BUNDLE=${BUNDLE:-src/swifti2v/weights/tiny}
EXTRA=${EXTRA:-}
S1_EXTRA=${S1_EXTRA:-}
S2_EXTRA=${S2_EXTRA:-}
PYTHON=${PYTHON:-python}
SWIFTI2V=${SWIFTI2V:-swifti2v}
COMMON="--resume --max-steps $STEPS --set max_minutes=$MINUTES --set mixed_precision=$PRECISION \
        --set data.num_workers=$NUM_WORKERS --set save_every=$SAVE_EVERY --set keep_checkpoints=3 $EXTRA"

both() {  # run two commands side by side; fail if either fails
  bash -c "$1" & local a=$!
  bash -c "$2" & local b=$!
  wait $a && wait $b
}

# 0. The start: the bundle's models (codec, text encoder), Stage I's transformer from the pans piece.
if [ ! -f "$RUN/base/stage2/transformer/config.json" ]; then
  mkdir -p "$RUN/base" && cp -r "$BUNDLE/stage1" "$BUNDLE/stage2" "$RUN/base/"
fi
S1_START=$RUN/base/stage1
if [ -n "$STAGE1_FROM" ]; then
  S1_START=$RUN/base/stage1-start
  [ -f "$S1_START/model_index.json" ] || $PYTHON -m swifti2v.training.tiny compose "$RUN/base/stage1" "$STAGE1_FROM" "$S1_START"
fi

# 1. Stage I on the full motion mix || Stage II's anchor curriculum.
both "$SWIFTI2V train stage1 --config configs/train/tiny-stage1.toml --set batch_size=$S1_BATCH \
        --set model.stage1=$S1_START --set ema_decay=0.998 --set optim.warmup_steps=50 --set seed=20000 \
        --output-dir $RUN/stage1 $COMMON $S1_EXTRA" \
     "$SWIFTI2V train stage2 --config configs/train/tiny-stage2.toml --set batch_size=$S2_BATCH \
        --set data.height=$S2_SIZE --set data.width=$S2_SIZE --set model.stage1=$RUN/base/stage1 \
        --set model.stage2=$RUN/base/stage2 --set condition.kind=degrade --set condition.blur=1.5 \
        --set condition.noise=0.04 --set condition.jpeg_quality=50 --set ema_decay=0.999 \
        --set optim.warmup_steps=50 --set seed=3000000 --output-dir $RUN/stage2 $COMMON $S2_EXTRA"

# 2. Where they stand, beside the bundle; and a candidate bundle.
# shellcheck disable=SC2086  # GAIN_SIZE is two numbers
$PYTHON -m recipes.tiny.probes.gains --stage1 "$RUN/stage1/final" --stage2 "$RUN/stage2/final" --out "$RUN/gains.json" \
  --direction-clips "$DIRECTION_CLIPS" --photo-clips "$PHOTO_CLIPS" --size $GAIN_SIZE
$PYTHON -m swifti2v.training.tiny assemble --base "$RUN/base" --stage1 "$RUN/stage1/final" \
  --stage2 "$RUN/stage2/final" --out "$RUN/bundle"
