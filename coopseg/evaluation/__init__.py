"""Metrics, evaluation passes over validation sets, reports and their figures."""
