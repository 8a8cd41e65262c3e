"""The `swifti2v` command line."""
