"""Small helpers every layer may use: console start-up, progress bars, Markdown tables, atomic
file writes."""
