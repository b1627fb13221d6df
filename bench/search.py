"""Successive halving against the full grid over the same search space, side by side in one run.

Both sides are the shipped example `include/configs/experiments/search-halving.yaml` (the demo's data and
model, a grid of 8 LoRA configurations over learning rate, LoRA rank and scheduler): the grid side with
`search.halving` removed, so every configuration trains all `max_steps`; the halving side as shipped,
every configuration training the first rung, the best 1/eta by validation loss continuing from their
committed checkpoints, and so on. Export, promotion and the base-model reference are off: only training
and scoring are compared.

Each side runs the pipeline as `finetune_experiment` does, without Airflow: `validate_conf`, every
`prepare_dataset` step, `plan_jobs`, then per round the train steps, the final jobs' evaluate steps and
the next round's planning (`plan_round`), and the leaderboard. Every heavy step is the real command
(`python -m tasks.<step> --job <spec uri>`) in a subprocess, one at a time. Both sides share one store,
so the dataset is prepared once (the second side finds it built).

Measured: optimizer steps trained (each train result's steps minus the step it resumed from: no step
counts twice), wall time, and the winner's primary metric. Targets (issue 14): the halving winner within
0.01 of the grid winner, with at most 0.5x the grid's training steps.

The last line is one JSON object: {"metric", "value", "baseline", "ratio", "target", ...}.

    python bench/search.py                          # SmolLM2-135M on the Tuna identity set (CPU: ~30 min)
    python bench/search.py --model-uri /tmp/tiny --max-steps 8 --min-steps 2   # smoke run, tiny model
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Importable once the repository is on the path; none of these loads torch (the steps run in subprocesses).
from tasks.backends.local import run_step  # noqa: E402
from tasks.config.form import load_conf  # noqa: E402
from tasks.config.search import MAX_ROUNDS  # noqa: E402
from tasks.contracts.planning import PlannedJob  # noqa: E402
from tasks.contracts.prepare import PreparedDataset  # noqa: E402
from tasks.contracts.selection import Leaderboard  # noqa: E402
from tasks.contracts.train import TrainResult  # noqa: E402
from tasks.pipeline.plan import final_jobs, plan_jobs, plan_round, planned, run_info, validate_conf  # noqa: E402
from tasks.pipeline.selection import leaderboard  # noqa: E402
from tasks.scoring.plugins import lower_is_better  # noqa: E402
from tasks.storage import store  # noqa: E402

CONF = REPO / "include" / "configs" / "experiments" / "search-halving.yaml"
TARGET_RATIO = 0.5
TARGET_GAP = 0.01


def confs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{side: conf}: the shipped halving conf, and the same without halving (the full grid)."""
    conf = load_conf(CONF)
    conf["export"] = {"enabled": False}
    conf["promotion"] = {"enabled": False}
    conf["scoring"]["compare_base"] = False
    halving = conf["search"]["halving"]
    if args.max_steps:
        halving["max_steps"] = args.max_steps
    if args.min_steps:
        halving["min_steps"] = args.min_steps
    if args.model_uri:
        conf["models"] = [{"name": "bench-model", "uri": args.model_uri}]
    grid = copy.deepcopy(conf)
    del grid["search"]["halving"]
    # Every grid job trains what a halving trial reaching the last rung trains.
    grid["hparams"][0]["max_steps"] = halving["max_steps"]
    grid["name"] = f"{conf['name']}-grid"
    return {"grid": grid, "halving": conf}


def _run(argv: list[str]) -> dict[str, Any]:
    return run_step(argv)


def _trained_steps(job: PlannedJob) -> int:
    """Optimizer steps this job's training did itself: its steps minus the step it resumed from."""
    spec = store.read_json(job.train_spec)
    result = store.committed_result(spec["output"])
    if result is None:
        return 0
    train = TrainResult.load(result, spec["output"])
    return (train.steps or 0) - (train.resumed_from_step or 0)


def run_side(conf: dict[str, Any], root: str) -> dict[str, Any]:
    """One experiment, round after round, as finetune_experiment runs it; what it trained and won."""
    started = time.perf_counter()
    run_id = f"bench-{conf['name']}"
    run = run_info(conf["name"], run_id, root)
    datasets = [
        PreparedDataset.model_validate(_run(dataset.argv)) for dataset in validate_conf(conf, run_id, root)
    ]
    rounds, train = 0, plan_jobs(run, datasets)
    for number in range(1, MAX_ROUNDS + 1):
        train = train if number == 1 else plan_round(run, number)
        finals = final_jobs(run.run_uri, number)
        if not train and not finals:
            break
        rounds = number
        for job in train:
            print(f"  round {number} train {job.label}", flush=True)
            _run(job.train_argv)
        for job in finals:
            _run(job.evaluate_argv)
    jobs = planned(run.run_uri)
    board: Leaderboard = leaderboard(run.run_uri, jobs, conf["scoring"]["primary"])
    winner = board.winner
    return {
        "rounds": rounds,
        "jobs": sum(job.kind == "train" for job in jobs),
        "steps": sum(_trained_steps(job) for job in jobs if job.kind == "train"),
        "wall_s": round(time.perf_counter() - started, 1),
        "winner": winner.label if winner else None,
        "primary": winner.metrics.get(board.primary) if winner else None,
        "pruned": sum(row.status == "pruned" for row in board.rows),
        "search": board.search,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="Store root (default: a new temporary directory).")
    parser.add_argument("--model-uri", help="Another model directory instead of the demo's (smoke runs).")
    parser.add_argument("--max-steps", type=int, help="Override search.halving.max_steps.")
    parser.add_argument("--min-steps", type=int, help="Override search.halving.min_steps.")
    args = parser.parse_args()
    root = args.store or store.to_uri(Path(tempfile.mkdtemp(prefix="tunerflow-bench-search-")))
    results: dict[str, Any] = {}
    sides = confs(args)
    for side, conf in sides.items():
        print(f"{side}: {conf['search']}", flush=True)
        results[side] = run_side(conf, root)
    print(f"\n{'side':<8} {'rounds':>6} {'jobs':>5} {'steps':>6} {'wall s':>8}  winner (primary)")
    for side, result in results.items():
        print(
            f"{side:<8} {result['rounds']:>6} {result['jobs']:>5} {result['steps']:>6} "
            f"{result['wall_s']:>8}  {result['winner']} ({result['primary']})"
        )
    grid, halving = results["grid"], results["halving"]
    ratio = round(halving["steps"] / grid["steps"], 3) if grid["steps"] else None
    gap = None
    if grid["primary"] is not None and halving["primary"] is not None:
        # How much worse the halving winner is (negative: better), whichever way the metric points.
        worse = (
            halving["primary"] - grid["primary"]
            if lower_is_better(sides["grid"]["scoring"]["primary"])
            else (grid["primary"] - halving["primary"])
        )
        gap = round(worse, 4)
    passed = ratio is not None and ratio <= TARGET_RATIO and gap is not None and gap <= TARGET_GAP
    summary = {
        "metric": "training steps, successive halving / full grid",
        "value": halving["steps"],
        "baseline": grid["steps"],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "winner_gap": gap,
        "winner_gap_target": TARGET_GAP,
        "wall_s": {"grid": grid["wall_s"], "halving": halving["wall_s"]},
        "winners": {"grid": grid["winner"], "halving": halving["winner"]},
        "passed": passed,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
