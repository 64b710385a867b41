"""Sinks: where alerts, dead letters, windows and scored messages go."""
