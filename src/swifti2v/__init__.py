"""swifti2v: efficient high-resolution image-to-video generation (the SwiftI2V method).

Stage I makes the clip's motion at low resolution with a large Wan I2V model; a hybrid reference
(upsampled Stage I frames, frame 0 := the real input image) is encoded with the Stage II VAE; Stage II
adds 2K detail segment by segment (CSG) with a smaller Wan DiT. Importing this package has no side effects.
"""

__version__ = "0.1.0"
