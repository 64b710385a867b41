"""A JSON-lines file as a source: one raw item per line, read as bytes."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from bytewax.inputs import StatefulSourcePartition

from flows.sources import PartitionedSource, RawRecord


class _LinesPartition(StatefulSourcePartition[RawRecord, tuple[int, int]]):
    def __init__(self, path: Path, batch_size: int, resume: tuple[int, int] | None) -> None:
        self._file = path.open("rb")
        self._origin = file_origin(path)
        self._batch_size = batch_size
        offset, self._line = resume or (0, 0)
        self._file.seek(offset)

    def next_batch(self) -> list[RawRecord]:
        lines = list(islice(self._file, self._batch_size))
        if not lines:
            raise StopIteration
        first, self._line = self._line + 1, self._line + len(lines)
        origin = self._origin
        return [
            RawRecord(line.rstrip(b"\r\n"), origin, str(number))
            for number, line in enumerate(lines, first)
            if not line.isspace()  # blank lines carry no item
        ]

    def snapshot(self) -> tuple[int, int]:
        return self._file.tell(), self._line

    def close(self) -> None:
        self._file.close()


class JsonLinesSource(PartitionedSource[tuple[int, int]]):
    """Reads a file to its end, then ends (closing every window).

    Lines are passed on as bytes, unparsed, so that bad lines reach the parser and
    become dead letters with a reason. Resumable: the snapshot is the byte offset.
    """

    def __init__(self, path: str | Path, batch_size: int = 256) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"input file not found: {self.path}")
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def origin(self, part: str) -> str:
        return file_origin(Path(part))

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _LinesPartition:
        return _LinesPartition(self.path, self.batch_size, resume_state)


def file_origin(path: Path) -> str:
    return f"file:{path.name}"
