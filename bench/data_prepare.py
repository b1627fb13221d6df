"""Dataset preparation at scale: tunerflow's prepare step against the same checks written with `datasets`.

Generates an Alpaca-style JSONL file (default 1,000,000 rows, with duplicates, broken rows and rows too
long for the token budget), then, side by side in one run and each in its own process:

- tunerflow: `tasks.data.preparation.prepare` with the demo model's tokenizer (validation, token-length
  checks, exact dedup, a 98/2/0 split; decontamination and PII are off because the baseline has none);
- baseline: what a user writes with `datasets.load_dataset("json")` and batched `map`/`filter` with the
  same tokenizer, the same checks and the same number of processes, then `train_test_split` and
  `to_json`.

Both are timed end to end and their peak memory (the process tree's summed RSS, sampled every 50 ms) is
recorded. The run repeats at a smaller size so that the memory at 100k and 1M rows can be compared.
The last line is one JSON object: {"metric", "value", "baseline", "ratio", "target"}.

    python bench/data_prepare.py                      # 1M rows (and 100k for the memory comparison)
    python bench/data_prepare.py --rows 20000 --small-rows 5000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 512
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "model",
    "data",
    "train",
    "learn",
    "token",
    "batch",
    "layer",
    "weight",
    "loss",
    "answer",
    "question",
]


def generate(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Alpaca rows of varied length; about 2% exact duplicates, 0.5% broken, 0.5% far too long."""
    rng = random.Random(seed)
    made = {"duplicates": 0, "broken": 0, "too_long": 0}
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.02 and recent:
                line = rng.choice(recent)
                made["duplicates"] += 1
            elif roll < 0.025:
                line = json.dumps({"instruction": f"question {i}", "input": ""})  # no output
                made["broken"] += 1
            else:
                length = rng.randint(3000, 4000) if roll < 0.03 else rng.randint(8, 90)
                made["too_long"] += roll < 0.03
                question = " ".join(rng.choices(WORDS, k=rng.randint(5, 30))) + f" #{i}?"
                answer = " ".join(rng.choices(WORDS, k=length))
                line = json.dumps({"instruction": question, "input": "", "output": answer})
                recent = [*recent, line][-100:]
            handle.write(line + "\n")
    return made


def tokenizer_entry() -> dict:
    from tasks.config.catalog import models

    return models()[MODEL].model_dump()


def run_tunerflow(data: Path, work: Path, workers: int) -> dict:
    os.environ["TUNERFLOW_DATA_WORKERS"] = str(workers)
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare

    dataset = {
        "name": "bench",
        "uri": str(data),
        "format": "alpaca",
        "split": "98,2,0",
        "max_tokens": MAX_TOKENS,
        "decontaminate_ngram": 0,
        "max_drop_ratio": 0.5,
    }
    store_root = os.environ["TUNERFLOW_STORE"]
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset, tokenizers=[tokenizer_entry()]))
    return {"counts": result["counts"], "dropped": result["dropped"], "drop_reasons": result["drop_reasons"]}


def run_baseline(data: Path, work: Path, workers: int) -> dict:
    """The same checks as a user writes them with datasets: batched map/filter, num_proc workers."""
    import hashlib
    import re
    import unicodedata

    import numpy as np
    from datasets import disable_progress_bars, load_dataset

    from tasks.data.token_counts import _overheads
    from tasks.training.base_models import load_tokenizer

    disable_progress_bars()
    tokenizer = load_tokenizer(tokenizer_entry(), os.environ["TUNERFLOW_STORE"])
    turn_overhead, fixed_overhead = _overheads(tokenizer)
    ds = load_dataset("json", data_files=str(data), split="train", cache_dir=str(work / "hf-cache"))

    def convert(batch):
        ok, messages = [], []
        for instruction, extra, output in zip(
            batch["instruction"], batch["input"], batch["output"], strict=True
        ):
            valid = bool(instruction and instruction.strip() and output and output.strip())
            prompt = f"{instruction}\n\n{extra}" if extra else (instruction or "")
            ok.append(valid)
            messages.append(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": output or ""}]
            )
        return {"ok": ok, "messages": messages}

    ds = ds.map(convert, batched=True, num_proc=workers, remove_columns=ds.column_names)
    ds = ds.filter(lambda batch: batch["ok"], batched=True, num_proc=workers)

    def measure(batch):
        texts = ["\n".join(m["content"] for m in turns) for turns in batch["messages"]]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths = [
            len(x) + int(np.ceil(len(t) * turn_overhead)) + fixed_overhead
            for x, t in zip(ids, batch["messages"], strict=True)
        ]
        keys = []
        for turns in batch["messages"]:
            raw = "\n".join(f"{m['role']}:{m['content']}" for m in turns)
            folded = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", raw).casefold()).strip()
            keys.append(hashlib.blake2b(folded.encode(), digest_size=8).hexdigest())
        return {"n_tokens": lengths, "key": keys}

    ds = ds.map(measure, batched=True, num_proc=workers)
    ds = ds.filter(lambda batch: [n <= MAX_TOKENS for n in batch["n_tokens"]], batched=True, num_proc=workers)
    _, first = np.unique(np.asarray(ds["key"]), return_index=True)
    keep = set(first.tolist())
    ds = ds.filter(lambda _, indices: [i in keep for i in indices], with_indices=True, batched=True)
    parts = ds.train_test_split(test_size=0.02, seed=42)
    for name, part in parts.items():
        part.to_json(str(work / f"baseline-{name}.jsonl"))
    return {"counts": {name: len(part) for name, part in parts.items()}}


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        process = psutil.Process(pid)
        procs = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def measure(kind: str, data: Path, workers: int, store: Path) -> dict:
    """Run one side in a fresh process; wall time and the peak summed RSS of its process tree."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=store))
    env = {**os.environ, "TUNERFLOW_STORE": store.as_uri(), "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        __file__,
        "--side",
        kind,
        "--data",
        str(data),
        "--work",
        str(work),
        "--workers",
        str(workers),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{kind} failed with exit code {process.returncode}")
    return {"seconds": seconds, "peak_mb": peak / 2**20, "result": json.loads(out.strip().splitlines()[-1])}


def warm_up(store: Path) -> None:
    """Convert the demo model once (cached in the store) so neither side pays for it."""
    os.environ["TUNERFLOW_STORE"] = store.as_uri()
    from tasks.training.base_models import load_tokenizer

    load_tokenizer(tokenizer_entry(), store.as_uri())


def compare(rows: int, workers: int, store: Path) -> dict:
    data = store / f"rows-{rows}.jsonl"
    made = generate(data, rows)
    ours = measure("tunerflow", data, workers, store)
    theirs = measure("baseline", data, workers, store)
    line = {
        "rows": rows,
        "generated": made,
        "tunerflow": {**ours, "rows_per_s": rows / ours["seconds"]},
        "baseline": {**theirs, "rows_per_s": rows / theirs["seconds"]},
    }
    print(
        f"{rows:>9,} rows: tunerflow {rows / ours['seconds']:>9,.0f} rows/s, "
        f"peak {ours['peak_mb']:>6.0f} MB | "
        f"datasets {rows / theirs['seconds']:>9,.0f} rows/s, peak {theirs['peak_mb']:>6.0f} MB | "
        f"speed ratio {theirs['seconds'] / ours['seconds']:.2f}x",
        flush=True,
    )
    kept = sum(ours["result"]["counts"].values()), sum(theirs["result"]["counts"].values())
    print(
        f"  rows kept: tunerflow {kept[0]:,} (dropped {ours['result']['drop_reasons']}), "
        f"datasets {kept[1]:,}; "
        f"same rows kept: {'yes' if kept[0] == kept[1] else 'NO'}",
        flush=True,
    )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--small-rows", type=int, default=100_000, help="second size, for the memory comparison"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--side", choices=["tunerflow", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        fn = run_tunerflow if args.side == "tunerflow" else run_baseline
        print(json.dumps(fn(args.data, args.work, args.workers)))
        return
    store = Path(tempfile.mkdtemp(prefix="tunerflow-bench-"))
    print(
        f"workers: {args.workers}, tokenizer: {MODEL}, max_tokens: {MAX_TOKENS}, scratch: {store}", flush=True
    )
    warm_up(store)
    small = compare(args.small_rows, args.workers, store)
    large = compare(args.rows, args.workers, store)
    growth = large["tunerflow"]["peak_mb"] / small["tunerflow"]["peak_mb"]
    mb = {side: (small[side]["peak_mb"], large[side]["peak_mb"]) for side in ("tunerflow", "baseline")}
    print(
        f"peak memory {args.small_rows:,} -> {args.rows:,} rows: "
        f"tunerflow {mb['tunerflow'][0]:.0f} -> {mb['tunerflow'][1]:.0f} MB ({growth:.2f}x); "
        f"datasets {mb['baseline'][0]:.0f} -> {mb['baseline'][1]:.0f} MB",
        flush=True,
    )
    if not args.keep:
        import shutil

        shutil.rmtree(store, ignore_errors=True)
    ours, theirs = large["tunerflow"]["rows_per_s"], large["baseline"]["rows_per_s"]
    print(
        json.dumps(
            {
                "metric": f"prepare rows/s at {args.rows} rows ({args.workers} processes)",
                "value": round(ours, 1),
                "baseline": round(theirs, 1),
                "ratio": round(ours / theirs, 2),
                "target": 2.0,
                "peak_mb": {
                    "tunerflow": [round(small["tunerflow"]["peak_mb"]), round(large["tunerflow"]["peak_mb"])],
                    "datasets": [round(small["baseline"]["peak_mb"]), round(large["baseline"]["peak_mb"])],
                },
                "peak_mb_rows": [args.small_rows, args.rows],
            }
        )
    )


if __name__ == "__main__":
    main()
