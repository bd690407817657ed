"""Training a built model: the LightningModule, model factory, optimizer, callbacks, loggers, checkpoints, run folders."""
