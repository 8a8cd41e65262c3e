#!/usr/bin/env bash
# Reproduce the bundled tiny models (src/swifti2v/weights/tiny) from seed 0 with swifti2v's own trainer.
# CPU works (the numbers in docs/results.md were made on 2 cores); a GPU is much faster.
#   bash recipes/tiny/train.sh [RUN_DIR]      (default outputs/tiny)
# Steps per phase can be changed with STAGE1_STEPS, PHASE1_STEPS, PHASE2_STEPS; EXTRA is passed to every
# `swifti2v train` (e.g. EXTRA="--set batch_size=16 --set data.num_workers=8" on a GPU machine).
set -euo pipefail
RUN=${1:-outputs/tiny}
STAGE1_STEPS=${STAGE1_STEPS:-500}
PHASE1_STEPS=${PHASE1_STEPS:-500}
PHASE2_STEPS=${PHASE2_STEPS:-500}
EXTRA=${EXTRA:-}


# 0. Random-init Wan-architecture models (seed 0), PixelCodec, tiny UMT5 + byte tokenizer.
python -c "from swifti2v.models.tiny import build_base; build_base('$RUN/base', seed=0)"

# 1. Stage I (whole-clip I2V at 128x72) and Stage II phase 1 (oracle references) are independent.
swifti2v train stage1 --config configs/train/tiny-stage1.toml --set model.stage1=$RUN/base/stage1 \
  --output-dir $RUN/stage1 --max-steps $STAGE1_STEPS --set save_every=100 $EXTRA &
swifti2v train stage2 --config configs/train/tiny-stage2.toml --set model.stage1=$RUN/base/stage1 \
  --set model.stage2=$RUN/base/stage2 --output-dir $RUN/stage2-oracle --max-steps $PHASE1_STEPS --set save_every=100 $EXTRA &
wait

# 2. A Stage I folder with the trained DiT (for stage-transition references). From phase 1, the same number of steps two ways: stage-transition references made by the trained
#    tiny Stage I (the shipped model) and oracle references again (the no-stage-transition ablation).
python -c "from swifti2v.models.tiny import compose; compose('$RUN/base/stage1', '$RUN/stage1/final', '$RUN/stage1-bundle')"
swifti2v train stage2 --config configs/train/tiny-stage2.toml --set model.stage1=$RUN/stage1-bundle \
  --set model.stage2=$RUN/base/stage2 --set model.init=$RUN/stage2-oracle/final --set condition.kind=stage1 \
  --set seed=2000000 --output-dir $RUN/stage2 --max-steps $PHASE2_STEPS --set save_every=100 $EXTRA &
swifti2v train stage2 --config configs/train/tiny-stage2.toml --set model.stage1=$RUN/base/stage1 \
  --set model.stage2=$RUN/base/stage2 --set model.init=$RUN/stage2-oracle/final \
  --set seed=2000000 --output-dir $RUN/stage2-no-transition --max-steps $PHASE2_STEPS --set save_every=100 $EXTRA &
wait

# 3. Bundle into the package.
python recipes/tiny/assemble.py --base $RUN/base --stage1 $RUN/stage1/final --stage2 $RUN/stage2/final \
  --ablation $RUN/stage2-no-transition/final
