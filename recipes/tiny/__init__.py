"""The tiny models' recipe: train.sh, and probes/ (importable modules run as `python -m recipes.tiny.probes.NAME`)."""
