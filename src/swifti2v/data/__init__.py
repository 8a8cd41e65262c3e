"""Training data: video folders with captions, clip loading, and the latent cache."""
