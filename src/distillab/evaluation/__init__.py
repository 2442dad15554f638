"""Metrics, and the run report (metrics.json, report.md, console table)."""
