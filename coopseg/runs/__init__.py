"""A run directory on disk: its config.json, checkpoints and one-writer lock."""
