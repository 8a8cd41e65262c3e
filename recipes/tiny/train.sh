#!/usr/bin/env bash
# Reproduce the bundled tiny models (src/swifti2v/weights/tiny) from seed 0 with swifti2v's own trainer
# (up to floating-point differences between machines and thread counts).
#   bash recipes/tiny/train.sh [RUN_DIR]      (default outputs/tiny; BUNDLE= elsewhere to not overwrite the package's)
# CPU works (the bundled weights were made on 2 cores, each run single-threaded, two at a time); a GPU is
# much faster. Steps per phase: STAGE1_STEPS, PHASE1_STEPS, PHASE2_STEPS. EXTRA is passed to every
# `swifti2v train`, e.g. EXTRA="--set batch_size=16 --set data.num_workers=8" on a GPU machine.
set -euo pipefail
RUN=${1:-outputs/tiny}
STAGE1_STEPS=${STAGE1_STEPS:-500}
PHASE1_STEPS=${PHASE1_STEPS:-550}
PHASE2_STEPS=${PHASE2_STEPS:-450}
EXTRA=${EXTRA:-}
BUNDLE=${BUNDLE:-src/swifti2v/weights/tiny}
S1="swifti2v train stage1 --config configs/train/tiny-stage1.toml --set save_every=100 $EXTRA"
S2="swifti2v train stage2 --config configs/train/tiny-stage2.toml --set model.stage2=$RUN/base/stage2 \
    --set save_every=100 $EXTRA"

both() {  # run two commands side by side; fail if either fails
  bash -c "$1" & local a=$!
  bash -c "$2" & local b=$!
  wait $a && wait $b
}

# 0. Random-init Wan-architecture models (seed 0), PixelCodec, tiny UMT5 + byte tokenizer.
python -c "from swifti2v.models.tiny import build_base; build_base('$RUN/base', seed=0)"

# 1. Stage I (whole-clip I2V at 128x72) || Stage II phase 1 (CSG windows, oracle references).
both "$S1 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage1 --max-steps $STAGE1_STEPS" \
     "$S2 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage2-oracle --max-steps $PHASE1_STEPS"

# 2. From phase 1, the same number of steps two ways: stage-transition references made by the trained
#    tiny Stage I (the shipped model) || oracle references again (the no-stage-transition ablation).
python -c "from swifti2v.models.tiny import compose; compose('$RUN/base/stage1', '$RUN/stage1/final', '$RUN/stage1-bundle')"
PHASE2="--set model.init=$RUN/stage2-oracle/final --set seed=2000000 --max-steps $PHASE2_STEPS"
both "$S2 $PHASE2 --set model.stage1=$RUN/stage1-bundle --set condition.kind=stage1 --output-dir $RUN/stage2" \
     "$S2 $PHASE2 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage2-no-transition"

# 3. Bundle into the package.
python recipes/tiny/assemble.py --base $RUN/base --stage1 $RUN/stage1/final --stage2 $RUN/stage2/final \
  --ablation $RUN/stage2-no-transition/final --out $BUNDLE
