"""Reading the calibration files of `tasks.exporting.calibration` safely: (gzip) JSON lines, a JSON list,
CSV or Parquet, with a UTF-8 BOM skipped. The files come from the hub, S3 or a user: a gzip that inflates
without end (a zip bomb), a line of hundreds of MB, a cut-short or corrupt file, or JSON nested beyond the
parser's limit is a CalibrationError naming the file, read in bounded memory.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Enough documents for thousands of windows; reading a whole 300 MB C4 training shard is pointless.
MAX_TEXTS = 20_000
# Hostile or corrupt files: a C4 document is a few KB and MAX_TEXTS of them about 50 MB of text, so a
# longer line or a file inflating past this (a zip bomb) is refused instead of filling memory.
MAX_LINE_BYTES = 16 << 20
MAX_DECOMPRESSED_BYTES = 512 << 20
BOM = b"\xef\xbb\xbf"


class CalibrationError(ValueError):
    """Calibration data that cannot be read; the message names the setting and says what to do."""


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one file in a published format: (gzip) JSON lines, a JSON list, CSV or Parquet. A file
    that is corrupt, not UTF-8, or inflates past the caps is a CalibrationError naming it."""
    try:
        yield from _read_records(path)
    except CalibrationError:
        raise
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as error:
        raise CalibrationError(
            f"{path.name}: not readable ({type(error).__name__}: {str(error)[:200]}); check or re-download it"
        ) from None
    except Exception as error:  # pyarrow raises its own ArrowInvalid family on a corrupt Parquet file
        if type(error).__module__.startswith("pyarrow"):
            raise CalibrationError(
                f"{path.name}: not a readable Parquet file ({error}); re-export it"
            ) from None
        raise


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    if name.endswith(".csv"):
        csv.field_size_limit(MAX_LINE_BYTES)  # process-wide: set for every read, other readers set theirs
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield from csv.DictReader(handle)
        return
    lines = _lines(path)
    for number, line in lines:
        stripped = line.lstrip()
        if not stripped:
            continue
        if stripped.startswith(b"["):  # a JSON list; C4's own `.json` files are JSON lines
            text = b"".join([line, *(rest for _, rest in lines)]).decode("utf-8")
            yield from _parse(text, f"{path.name}: not a JSON list")
            return
        yield _parse(
            line.decode("utf-8"),
            f"{path.name}:{number}: not a JSON line; C4 files hold one JSON object a line",
        )


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise CalibrationError(what) from None
    except RecursionError:
        raise CalibrationError(f"{what} (nested too deep)") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(number, line) of a (gzip) text file, the UTF-8 BOM dropped; no line is held longer than
    MAX_LINE_BYTES and no more than MAX_DECOMPRESSED_BYTES are inflated, so a zip bomb is refused in
    bounded memory."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    total = 0
    with opener(path, "rb") as handle:
        for number in itertools.count(1):
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            total += len(line)
            if len(line) > MAX_LINE_BYTES:
                raise CalibrationError(
                    f"{path.name}:{number}: a line longer than {MAX_LINE_BYTES} bytes; C4 holds one "
                    "document a line (is the file corrupt, or not C4?)"
                )
            if total > MAX_DECOMPRESSED_BYTES:
                raise CalibrationError(
                    f"{path.name}: inflates to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB before giving "
                    f"{MAX_TEXTS} texts; give a real C4 shard (a corrupt or hostile gzip is refused)"
                )
            yield number, line.removeprefix(BOM) if number == 1 else line
