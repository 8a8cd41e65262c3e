"""`swifti2v eval`: metrics of a generated video against its input image (and optional truth)."""
