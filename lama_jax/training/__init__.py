"""Training: the train state, the jitted GAN step, losses, optimisers, checkpoints and the loop."""
