"""The only package that knows diffusers: loading, the Wan adapter and its seams, streaming VAE, LoRA."""
