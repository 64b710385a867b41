"""Message processors: envelope, parsing, models, windows, detectors. No Bytewax, no I/O."""
