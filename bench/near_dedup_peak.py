"""Peak memory and time of preparing 100,000 alpaca rows with `dedup: exact` or `near` (docs/datasets.md).

`python bench/near_dedup_peak.py --make ROWS.jsonl` writes the rows: every 10th is a copy of an earlier
row with two of its 60 words changed. `PYTHONPATH=. TUNERFLOW_DATA_WORKERS=2 python
bench/near_dedup_peak.py MODE [THRESHOLD] [ROWS.jsonl]` prepares them (MODE exact or near) into a
temporary store and prints the drop reasons, seconds and the main process's and largest worker's peak RSS.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ROWS = "/tmp/near_dedup_rows.jsonl"


def make(path: str, n: int = 100_000) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    recent: list[list[str]] = []
    with open(path, "w") as out:
        for i in range(n):
            if i % 10 == 9 and recent:
                words = list(rng.choice(recent))
                words[3], words[-2] = "changed", "edited"
            else:
                words = rng.choices(vocab, k=60)
                recent = [*recent[-999:], words]
            row = {"instruction": " ".join(words[:20]), "output": " ".join(words[20:])}
            out.write(json.dumps(row) + "\n")


def main() -> None:
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare

    mode = sys.argv[1]
    threshold = {"near_dedup_threshold": float(sys.argv[2])} if mode == "near" and len(sys.argv) > 2 else {}
    rows = sys.argv[3] if len(sys.argv) > 3 else DEFAULT_ROWS
    if not Path(rows).exists():
        make(rows)
    dataset = {"name": "b", "uri": rows, "dedup": mode, "decontaminate_ngram": 0, "max_drop_ratio": 0.5}
    started = time.time()
    with tempfile.TemporaryDirectory() as store:
        result = prepare(PrepareSpec(store_root=Path(store).as_uri(), dataset={**dataset, **threshold}))
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    seconds = time.time() - started
    print(mode, result["drop_reasons"], f"{seconds:.1f} s", f"main {main_mb} MB, worker {child_mb} MB")


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        make(sys.argv[2])
    else:
        main()
