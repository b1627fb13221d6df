"""Peak memory of dataset preparation on a file with one enormous line, against a file of normal rows.

Two JSONL files of about `--size-mb` MB each (default 200):

- (a) normal: text rows of ~2 KB each;
- (b) one line: a few normal rows around one valid `{"text": ...}` row of the whole size.

Each is prepared by `tasks.data.preparation.prepare` (no tokenizer, one worker, so the process measured
is the one doing the work) in a fresh child process, which reports its own peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, plus RUSAGE_CHILDREN for any worker it started). The huge
line is over `max_row_bytes` (default 1 MiB) and is dropped as `too_long` before it is parsed, so (b)
should cost no more than (a); before the cap it was kept and peaked at ~40x its size.

The last line is one JSON object:
{"metric": "peak_rss_mb_200mb_line", "value", "baseline" (the normal file's peak), "ratio", "target"}.

    python bench/prepare_memory.py                 # 200 MB files, about a minute
    python bench/prepare_memory.py --size-mb 20    # a quick smoke run
    python bench/prepare_memory.py --size-mb 20 --tokenizer smollm2-135m-instruct   # with token counts
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MB = 1024
EDGE_ROWS = 50  # normal rows before and after the huge line, so the format is detected and little dropped


def _row(index: int) -> str:
    words = " ".join(f"w{(index * 7919 + k) % 100_003}" for k in range(250))
    return json.dumps({"text": f"Document {index}: {words}."})


def write_normal(path: Path, size: int) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8") as out:
        while out.tell() < size:
            out.write(_row(rows) + "\n")
            rows += 1
    return rows


def write_one_line(path: Path, size: int) -> int:
    chunk = "x" * (1 << 20)
    with open(path, "w", encoding="utf-8") as out:
        for index in range(EDGE_ROWS):
            out.write(_row(index) + "\n")
        out.write('{"text": "')
        for _ in range(max(1, size >> 20)):  # written a MiB at a time: the generator stays small too
            out.write(chunk)
        out.write('"}\n')
        for index in range(EDGE_ROWS, 2 * EDGE_ROWS):
            out.write(_row(index) + "\n")
    return 2 * EDGE_ROWS + 1


CHILD = """
import json, resource, sys, time
from tasks.contracts.prepare import PrepareSpec
from tasks.data.preparation import prepare
path, store, tokenizer = sys.argv[1], sys.argv[2], sys.argv[3]
dataset = {"name": "bench", "uri": path, "split": "98,2,0", "decontaminate_ngram": 0}
tokenizers = []
if tokenizer:
    from tasks.config.catalog import models
    tokenizers = [models()[tokenizer].model_dump()]
started = time.perf_counter()
result = prepare(PrepareSpec(store_root=store, dataset=dataset, tokenizers=tokenizers))
seconds = time.perf_counter() - started
usage = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
peak_kb = max(usage)  # Linux reports KiB
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": seconds, "counts": result["counts"],
                  "drop_reasons": result["drop_reasons"]}))
"""


def measure(path: Path, work: Path, tokenizer: str) -> dict:
    store = work / "store"  # shared, so a tokenizer converted for (a) is reused by (b)
    env = {**os.environ, "TUNERFLOW_DATA_WORKERS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), store.as_uri(), tokenizer],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"preparing {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of each file (and of the huge line)")
    parser.add_argument(
        "--tokenizer",
        default="",
        help="a catalog model whose tokenizer counts tokens (e.g. smollm2-135m-instruct); off by default "
        "because it makes (a) much slower",
    )
    args = parser.parse_args()
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(prefix="prepare-memory-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        normal, one_line = work / "normal.jsonl", work / "one_line.jsonl"
        rows = write_normal(normal, size)
        write_one_line(one_line, size)
        print(
            f"files written in {time.perf_counter() - started:.1f} s: {rows} normal rows; one line of "
            f"{args.size_mb} MB among {2 * EDGE_ROWS} normal rows"
        )
        if args.tokenizer:  # convert the tokenizer into the store once, outside the measured runs
            warm = work / "warm.jsonl"
            write_normal(warm, 1 << 16)
            measure(warm, work, args.tokenizer)
        results = {
            name: measure(path, work, args.tokenizer)
            for name, path in (("normal", normal), ("one_line", one_line))
        }
    print(f"{'file':<10} {'MB':>6} {'peak RSS MB':>12} {'seconds':>8}  drops")
    for name, result in results.items():
        file_mb = args.size_mb
        print(
            f"{name:<10} {file_mb:>6} {result['peak_rss_mb']:>12.0f} {result['seconds']:>8.1f}  "
            f"{result['drop_reasons']}"
        )
    value = results["one_line"]["peak_rss_mb"]
    baseline = results["normal"]["peak_rss_mb"]
    print(
        json.dumps(
            {
                "metric": f"peak_rss_mb_{args.size_mb}mb_line",
                "value": round(value, 1),
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 3),
                "target": TARGET_MB,
            }
        )
    )


if __name__ == "__main__":
    main()
