"""Training: batches with oversampling and augmentation, the fit loop, checkpoints and run folders."""
