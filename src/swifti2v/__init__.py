"""swifti2v: efficient high-resolution image-to-video generation (the SwiftI2V method).

Stage I makes the clip's motion at low resolution with a large Wan I2V model; a hybrid reference
(upsampled Stage I frames, frame 0 := the real input image) is encoded with the Stage II VAE; Stage II
adds 2K detail segment by segment (CSG) with a smaller Wan DiT. Importing this package has no side effects.
"""

__version__ = "0.1.0"

__all__ = ["Cancelled", "Result", "SwiftI2V", "UserError"]


def __getattr__(name: str):  # the API on first use: `import swifti2v` stays light and side-effect free
    if name == "SwiftI2V":
        from swifti2v.api import SwiftI2V

        return SwiftI2V
    if name == "Result":
        from swifti2v.pipeline import Result

        return Result
    if name in ("Cancelled", "UserError"):
        from swifti2v import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'swifti2v' has no attribute {name!r}")
