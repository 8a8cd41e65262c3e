"""Bundle the trained tiny models into the package (src/swifti2v/weights/tiny). See recipes/tiny/train.sh."""

import argparse

from swifti2v.models.tiny import WEIGHTS_DIR, assemble

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--base", required=True, help="folder written by build_base (codec, text encoder, tokenizer)")
p.add_argument("--stage1", required=True, help="trained Stage I transformer folder (train stage1 .../final)")
p.add_argument("--stage2", required=True, help="trained Stage II transformer folder (stage-transition)")
p.add_argument("--out", default=str(WEIGHTS_DIR / "tiny"))
a = p.parse_args()
print(assemble(a.base, a.stage1, a.stage2, a.out))
