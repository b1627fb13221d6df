"""GGUF export on the demo model: each GGUF file against the PyTorch model it came from, side by side.

On the bundled SmolLM2-135M-Instruct (the catalog default, untouched base weights: its shipped Q4_1 GGUF
converted to fp32 safetensors once is the "PyTorch" reference), one run:

- exports GGUF with the shipped `export.gguf_types` (f16 and q8_0) through the export step
  (`execute("export", ...)`: merge, conversion, Ollama Modelfile, commit);
- checks every file through the check_export step (`execute("check_export", ...)`, the same gates as a
  run): each file loaded back with transformers' GGUF loader and compared with PyTorch on the 12 fixed
  prompts (max logit difference, next-token and every-position agreement), 16 tokens generated greedily
  from each (greedy agreement, prompts identical), the file's tokenizer against the merged one, and the
  demo's scoring (exact_match, rouge_l, 24 new tokens, greedy) on the held-out chat set;
- times each step.

The held-out chat set is the demo's: `builtin:tuna_identity` prepared with the demo's split (80,10,10), its
test split (29 rows; `--rows N` scores the first N), so the metric drop is measured on real paraphrases,
not on made-up rows. File sizes depend on shapes only; the agreements on the weights.

The last line is one JSON object: {"metric": "gguf q8_0 size vs PyTorch", "value", "baseline", "ratio",
"target", "passed", ...} with each file's figures and the gates' verdict as extra keys. `passed` needs the
q8_0 size ratio within target, the f16 one within its own, and every check_export gate passed.

    python bench/gguf_export.py                         # the full run (4-5 min on 2 CPU cores)
    python bench/gguf_export.py --quick --rows 2 --model-dir DIR   # smoke: any llama-family HF directory

`--quick` lowers the check's prompt and token counts (3 fixed prompts, 4 greedy tokens, 4 new tokens when
scoring) for this process only; the product's defaults are untouched. `--model-dir` exports that directory
instead of the demo model (the tests smoke the bench on the tiny test model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The demo's conf and prepared dataset as bench/export.py reads them (importable once REPO is on the path).
from bench.export import demo_conf, log, model_entry, prepared_dataset  # noqa: E402

MODEL = "smollm2-135m-instruct"
# q8_0 stores 8 bits plus one fp16 scale per 32 weights (8.5 bits) against fp32's 32: ~0.27 with the tied
# embedding stored once; f16 is ~0.5. Shapes alone decide these, so the targets leave little slack.
TARGET_Q8_0, TARGET_F16 = 0.3, 0.55
QUICK_PROMPTS, QUICK_GREEDY_TOKENS, QUICK_NEW_TOKENS = 3, 4, 4
FIGURES = (
    "size_bytes",
    "size_ratio",
    "max_logit_diff",
    "next_token_agreement",
    "position_agreement",
    "greedy_agreement",
    "greedy_identical_prompts",
    "tokenizer_agreement",
    "metric_drop",
)


def quick_counts() -> None:
    """Fewer fixed prompts and greedy tokens, in this process only (module constants the checks read)."""
    from tasks.exporting import gguf_checks, parity

    parity.FIXED_PROMPTS = parity.FIXED_PROMPTS[:QUICK_PROMPTS]
    gguf_checks.GREEDY_PROMPTS = QUICK_PROMPTS
    gguf_checks.GREEDY_TOKENS = QUICK_GREEDY_TOKENS


def run_steps(store_root: str, prefix: str, entry: Any, dataset: dict[str, Any], scoring: Any) -> dict:
    """The export and check_export steps as a run calls them; a failing gate is reported, not raised."""
    from tasks.config.export import ExportConfig
    from tasks.contracts.export import CheckExportSpec, ExportSpec
    from tasks.exporting.checks import check_export
    from tasks.exporting.export_step import export
    from tasks.runtime.errors import StepError
    from tasks.runtime.step import execute
    from tasks.storage import store

    export_config = ExportConfig(formats=["gguf"])  # the shipped gguf_types and gates
    log(f"export: {entry.name} to GGUF {export_config.gguf_types}")
    started = time.perf_counter()
    exported = execute(
        "export",
        export,
        ExportSpec(
            output=store.join(prefix, "export"),
            store_root=store_root,
            model=entry,
            formats=["gguf"],
            export_config=export_config,
        ),
    )
    export_s = time.perf_counter() - started
    log(f"export took {export_s:.0f} s; check_export")
    job = CheckExportSpec(
        output=store.join(prefix, "check_export"),
        store_root=store_root,
        model=entry,
        export=exported,
        dataset=dataset,
        scoring=scoring,
        export_config=export_config,
    )
    started = time.perf_counter()
    error = None
    try:
        checked = execute("check_export", check_export, job)
    except StepError as raised:  # the gates refused: checks.json is written before the step raises
        error = str(raised)
        checked = store.read_json(store.join(job.output, "checks.json"))
    check_s = time.perf_counter() - started
    log(f"check_export took {check_s:.0f} s")
    return {
        "export": exported,
        "checks": checked,
        "error": error,
        "gguf_types": export_config.gguf_types,
        "seconds": {"export": round(export_s, 1), "check_export": round(check_s, 1)},
    }


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: a rounded number, or '-' for a figure that was not measured."""
    return "-" if value is None else str(round(value, digits))


def print_table(name: str, outcome: dict[str, Any], rows: int, quick: bool) -> None:
    checks, exported = outcome["checks"], outcome["export"]
    metric = checks["gated_metric"]
    pytorch_size = exported["pytorch_size_bytes"]
    formats = checks["formats"]
    any_file = next(iter(formats.values()), {})
    greedy = any_file.get("greedy", {})
    print(f"model: {name} (base weights); {os.cpu_count()} CPU cores, no GPU used")
    print(
        f"held-out rows scored: {rows} ({checks['test_rows']} in the check); fixed prompts: "
        f"{greedy.get('prompts')} x {greedy.get('tokens')} greedy tokens" + (" (--quick)" if quick else "")
    )
    header = (
        f"{'file':<40} {'size MB':>8} {'x PyTorch':>9} {'max diff':>9} {'next-tok':>8} {'position':>8} "
        f"{'greedy':>7} {'prompts':>8} {'tokenizer':>10} {metric or '-':>9} {'drop':>8}"
    )
    print(header)
    reference = checks["reference_metrics"].get(metric) if metric else None
    pytorch = "pytorch fp32 (merged)"
    print(
        f"{pytorch:<40} {pytorch_size / 1e6:>8.1f} {1:>9.3f} {'-':>9} {'-':>8} {'-':>8} {'-':>7} {'-':>8} "
        f"{'-':>10} {cell(reference):>9} {'-':>8}"
    )
    for entry in formats.values():
        file = entry["uri"].rsplit("/", 1)[-1]
        agreement = entry["tokenizer_agreement"]
        tokenizer = "identical" if agreement == 1 else f"{agreement:.3f}"
        score = entry["metrics"].get(metric) if metric else None
        prompts = f"{entry['greedy_identical_prompts']} / {entry['greedy']['prompts']}"
        print(
            f"{file:<40} {entry['size_bytes'] / 1e6:>8.1f} {entry['size_ratio']:>9.3f} "
            f"{entry['max_logit_diff']:>9.4g} {entry['next_token_agreement']:>8.3f} "
            f"{entry['position_agreement']:>8.3f} {entry['greedy_agreement']:>7.3f} {prompts:>8} "
            f"{tokenizer:>10} {cell(score):>9} {cell(entry['metric_drop']):>8}"
        )
    seconds = outcome["seconds"]
    print(
        f"time per step: export {seconds['export']:.0f} s (merge + {len(outcome['gguf_types'])} GGUF files "
        f"+ Modelfile), check_export {seconds['check_export']:.0f} s"
    )
    problems = [problem for entry in formats.values() for problem in entry["problems"]]
    print("check_export gates: " + ("passed" if checks["passed"] else "FAILED: " + "; ".join(problems)))


def summary(outcome: dict[str, Any], name: str, rows: int, quick: bool) -> dict[str, Any]:
    checks, exported = outcome["checks"], outcome["export"]
    formats = checks["formats"]
    baseline = exported["pytorch_size_bytes"]
    q8_0 = formats.get("gguf-q8_0")
    f16 = formats.get("gguf-f16")
    value = q8_0["size_bytes"] if q8_0 else None
    ratio = round(value / baseline, 4) if value else None
    f16_ratio = round(f16["size_bytes"] / baseline, 4) if f16 else None
    passed = bool(
        checks["passed"]
        and (ratio is None or ratio <= TARGET_Q8_0)
        and (f16_ratio is None or f16_ratio <= TARGET_F16)
    )
    return {
        "metric": "gguf q8_0 size vs PyTorch",
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "target": TARGET_Q8_0,
        "f16_ratio": f16_ratio,
        "f16_target": TARGET_F16,
        "files": {
            key.removeprefix("gguf-"): {figure: entry[figure] for figure in FIGURES}
            | {"greedy_prompts": entry["greedy"]["prompts"], "greedy_tokens": entry["greedy"]["tokens"]}
            for key, entry in formats.items()
        },
        "gated_metric": checks["gated_metric"],
        "reference_metrics": checks["reference_metrics"],
        "gates_passed": bool(checks["passed"]),
        "problems": [problem for entry in formats.values() for problem in entry["problems"]],
        "seconds": outcome["seconds"],
        "model": name,
        "rows": rows,
        "quick": quick,
        "passed": passed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=0, help="held-out test rows scored (0: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_PROMPTS} fixed prompts, {QUICK_GREEDY_TOKENS} greedy tokens, {QUICK_NEW_TOKENS} new "
        "tokens when scoring (a smoke run)",
    )
    parser.add_argument(
        "--model-dir", default=None, help="a llama-family Hugging Face directory instead of the demo model"
    )
    parser.add_argument("--store", default=None, help="store root (default: a bench store in the cache dir)")
    parser.add_argument("--keep", action="store_true", help="keep the exported files (default: removed)")
    args = parser.parse_args()

    from tasks.config.scoring import ScoringConfig
    from tasks.data.parts import cache_dir
    from tasks.storage import store

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.quick:
        quick_counts()
    conf = demo_conf()
    store_root = args.store or (cache_dir() / "bench-gguf-store").as_uri()
    if "://" not in store_root:
        store_root = store.to_uri(store_root)
    scoring_conf = dict(conf["scoring"])
    if args.rows:
        scoring_conf["max_samples"] = args.rows
    if args.quick:
        scoring_conf["max_new_tokens"] = QUICK_NEW_TOKENS
    scoring = ScoringConfig.model_validate(scoring_conf)

    dataset = prepared_dataset(store_root, conf)
    rows = min(args.rows or dataset["counts"]["test"], dataset["counts"]["test"])
    entry = model_entry(args.model_dir)
    # A fresh prefix per run: the steps reuse a committed output, which would time nothing.
    prefix = store.join(store_root, "bench", "gguf", f"{entry.name}-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        outcome = run_steps(store_root, prefix, entry, dataset, scoring)
    finally:
        if not args.keep:
            shutil.rmtree(store.local_dir(prefix), ignore_errors=True)
    print_table(entry.name, outcome, rows, args.quick)
    result = summary(outcome, entry.name, rows, args.quick)
    print(
        f"ratios: q8_0 size {result['ratio']} (target <= {TARGET_Q8_0}), f16 size {result['f16_ratio']} "
        f"(<= {TARGET_F16}); gates {'passed' if result['gates_passed'] else 'failed'}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
