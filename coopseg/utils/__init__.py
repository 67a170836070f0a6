"""Small helpers every layer may use: console start-up, progress bars, atomic file writes."""
