"""Training: typed config, synthetic night pairs, losses, the loop, checkpoints and evaluation."""
