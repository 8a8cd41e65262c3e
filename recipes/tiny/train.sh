#!/usr/bin/env bash
# Train the bundled tiny models (src/swifti2v/weights/tiny) from seed 0 with swifti2v's own trainer.
#   bash recipes/tiny/train.sh [RUN_DIR]      (default outputs/tiny; BUNDLE= elsewhere to not overwrite the package's)
# Runs in pieces: every phase resumes from its last checkpoint in RUN_DIR, so re-running the script
# continues where the last piece stopped. MINUTES caps each phase's wall time per piece (0 = none),
# PHASE2_MINUTES the stage-transition phase's. Steps per phase: STAGE1_STEPS, PHASE1_STEPS, PHASE2_STEPS.
# EXTRA is passed to every `swifti2v train`, S1_EXTRA to Stage I's, S2_EXTRA to Stage II's; on a GPU, e.g.
#   EXTRA="--set mixed_precision=bf16 --set data.num_workers=7" S1_BATCH=32 S2_BATCH=16
# PHASE2_STEPS=0 skips phase 2 and bundles phase 1's Stage II (as does a Stage I whose stage-transition
# references lose the clips' motion: python -m recipes.tiny.probes.stage1_direction --gate).
# FROM=BUNDLE starts from a bundle's trained weights instead of the random init (a new machine without
# the last run's checkpoints); ZERO_HEAD=1 then zeroes its Stage II output projection (Stage II restarts as
# z_ref itself, as build_base's does). S2_SIZE sets the Stage II crop (default 256; 128 on a CPU).
# Phases: 0 base (codec fit + random-init DiTs) -> 1 Stage I || Stage II on oracle references -> 2 from
# phase 1, Stage II with stage-transition references from the trained Stage I (shipped) || oracle
# references (the no-stage-transition ablation, for `bench fidelity --ablation-model`) -> 3 bundle.
set -euo pipefail
RUN=${1:-outputs/tiny}
STAGE1_STEPS=${STAGE1_STEPS:-20000}
PHASE1_STEPS=${PHASE1_STEPS:-20000}
PHASE2_STEPS=${PHASE2_STEPS:-4000}
MINUTES=${MINUTES:-0}
PHASE2_MINUTES=${PHASE2_MINUTES:-$MINUTES}
S1_BATCH=${S1_BATCH:-4}
S2_BATCH=${S2_BATCH:-4}
S2_SIZE=${S2_SIZE:-256}
EXTRA=${EXTRA:-}
S1_EXTRA=${S1_EXTRA:-}
S2_EXTRA=${S2_EXTRA:-}
BUNDLE=${BUNDLE:-src/swifti2v/weights/tiny}
PYTHON=${PYTHON:-python}
SWIFTI2V=${SWIFTI2V:-swifti2v}
S1="$SWIFTI2V train stage1 --config configs/train/tiny-stage1.toml --set batch_size=$S1_BATCH --resume $EXTRA $S1_EXTRA"
S2="$SWIFTI2V train stage2 --config configs/train/tiny-stage2.toml --set batch_size=$S2_BATCH \
    --set data.height=$S2_SIZE --set data.width=$S2_SIZE \
    --set model.stage2=$RUN/base/stage2 --resume $EXTRA $S2_EXTRA"

both() {  # run two commands side by side; fail if either fails
  bash -c "$1" & local a=$!
  bash -c "$2" & local b=$!
  wait $a && wait $b
}

# 0. Random-init Wan-architecture models (seed 0), the fitted PCA codec, tiny UMT5 + byte tokenizer;
#    or, with FROM=a bundle (e.g. src/swifti2v/weights/tiny), that bundle's trained models and codec.
if [ ! -f "$RUN/base/stage2/transformer/config.json" ]; then
  if [ -n "${FROM:-}" ]; then
    mkdir -p "$RUN/base" && cp -r "$FROM/stage1" "$FROM/stage2" "$RUN/base/"
    if [ -n "${ZERO_HEAD:-}" ]; then
      $PYTHON -m swifti2v.training.tiny zero-head "$RUN/base/stage2/transformer"
    fi
  else
    $PYTHON -m swifti2v.training.tiny build-base "$RUN/base" --seed 0
  fi
fi

# 1. Stage I (whole-clip I2V at 128x72) || Stage II phase 1 (CSG windows, oracle references).
both "$S1 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage1 --max-steps $STAGE1_STEPS \
        --set max_minutes=$MINUTES" \
     "$S2 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage2-oracle --max-steps $PHASE1_STEPS \
        --set max_minutes=$MINUTES"

# 2. From phase 1, the same number of steps two ways: stage-transition references made by the trained
#    tiny Stage I (the shipped model) || oracle references again (the no-stage-transition ablation).
#    Only with a Stage I whose light denoising keeps the clips' motion as shifted copies (recipes/tiny/probes/stage1_direction.py
#    --gate): Stage II trained on references that lost the motion, or moved it as tiles, would learn to ignore
#    its reference.
STAGE2=$RUN/stage2-oracle/final
if [ "$PHASE2_STEPS" -gt 0 ] && ! $PYTHON -m recipes.tiny.probes.stage1_direction "$RUN/stage1/final" --gate; then
  echo "phase 2 skipped: Stage I's stage-transition references lose the motion or tile it; bundling phase 1's Stage II" >&2
elif [ "$PHASE2_STEPS" -gt 0 ]; then
  rm -rf "$RUN/stage1-bundle"
  $PYTHON -m swifti2v.training.tiny compose "$RUN/base/stage1" "$RUN/stage1/final" "$RUN/stage1-bundle"
  PHASE2="--set model.init=$RUN/stage2-oracle/final --set seed=2000000 --max-steps $PHASE2_STEPS \
          --set max_minutes=$PHASE2_MINUTES"
  both "$S2 $PHASE2 --set model.stage1=$RUN/stage1-bundle --set condition.kind=stage1 --output-dir $RUN/stage2" \
       "$S2 $PHASE2 --set model.stage1=$RUN/base/stage1 --output-dir $RUN/stage2-no-transition"
  STAGE2=$RUN/stage2/final
fi

# 3. Bundle into the package.
$PYTHON -m swifti2v.training.tiny assemble --base "$RUN/base" --stage1 "$RUN/stage1/final" --stage2 "$STAGE2" --out "$BUNDLE"
