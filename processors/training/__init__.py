"""Offline work on the models: training heads, fine-tuning, ONNX export and its gate.

The one part of `processors` that reads datasets and writes weights. Nothing on the
serving path imports it (a test walks the imports); the CLI's offline commands do.
"""
