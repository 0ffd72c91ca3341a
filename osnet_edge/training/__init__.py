"""Training core: datasets, samplers, augmentations, losses, recipes, the training loop."""
