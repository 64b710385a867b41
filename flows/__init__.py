"""Bytewax dataflows, their sources and sinks, the metrics endpoint and the CLI."""
