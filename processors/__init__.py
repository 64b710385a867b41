"""Message processors: pure functions and state of the monitor. No Bytewax, Kafka or HTTP.

One subpackage per concern:

- `envelope`: the records every item travels in, the parser, the canonical labels.
- `chain`: the `Processor` contract, the chain that isolates a failing message, the
  classifying processor and the merge strategies of several models.
- `models`: the models behind the classifiers and their runtime (encoders, heads,
  micro-batching, ONNX Runtime).
- `stream`: stream state: one event order, de-duplication, windows per key, stories.
- `detection`: detectors that judge closed windows, and the alert lifecycle.
- `entities`: which listed companies a message names (feed tickers, cashtags, names).
- `training`: offline only (training, fine-tuning, export, accuracy gates); nothing on
  the serving path imports it.
"""
