"""Recipes: how the bundled models are made (recipes/tiny/train.sh) and the probes that measure them."""
