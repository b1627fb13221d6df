"""The run page's server time for experiments of N jobs x 500 eval rows, on a file store and on an S3
store (moto's server, in this process), against the 300 ms target on file.

For each store and N, one synthetic finished run (`tests/fixtures/console_store.py`: every job's
training curves, checkpoints, TensorBoard file, predictions with per-row scores, the leaderboard, the
champion's answers, export checks, promotion) is written, then the run page is requested through the
app (`fastapi.testclient`, the caller and store given as in the UI tests): the view model is built from
the store and the template rendered, `--requests` times; the median counts. The table shows the median
per N and per job; the ratio of time per job at the largest N to the smallest shows that the page grows
no faster than the number of jobs (<= 1: linear or better). The last line is one JSON object:
{"metric", "value", "baseline", "ratio", "target", "passed", ...}.

    python bench/ui.py                                    # N = 10, 30, 100; 500 rows; file and s3
    python bench/ui.py --sizes 2,4 --rows 20 --requests 2 # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_MS = 300.0


def moto_root(scratch: Path) -> tuple[str, object]:
    """A bucket on moto's S3 server, started in this process, as the store root. The bench writes, then
    only reads, so moto's plain threaded server does (the tests serialise requests for racing writes)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TUNERFLOW_CACHE_DIR": str(scratch / "cache"),
        }
    )
    for name in ("AIRFLOW_CONN_AWS_DEFAULT", "TUNERFLOW_S3_CONN_ID"):
        os.environ.pop(name, None)
    boto3.session.Session().client("s3").create_bucket(Bucket="bench")
    return "s3://bench/tunerflow", server


def client_for(root: str):
    from fastapi.testclient import TestClient

    from plugins.tunerflow_ui import airflow_runs, auth, stores
    from plugins.tunerflow_ui.app import create_app

    app = create_app()
    app.dependency_overrides[auth.reader] = lambda: auth.Viewer("bench", True, True, token="bench")
    app.dependency_overrides[stores.store_root] = lambda: root
    app.dependency_overrides[airflow_runs.run_states] = lambda: lambda run_ids: {}
    return TestClient(app, root_path="/tunerflow", headers={"accept": "text/html"})


def page_ms(root: str, jobs: int, rows: int, requests: int) -> tuple[float, float]:
    """The median wall and CPU time (this process's, which on a file store is the server's alone) of
    the run page of a fresh run of `jobs` jobs x `rows` eval rows."""
    from tasks.storage import store
    from tests.fixtures.console_store import FakeJob, FakeRun, build_run

    run = FakeRun(
        experiment=f"bench-{jobs}",
        jobs=[FakeJob(f"hp{i}", 0.3 + i / (2 * jobs), steps=50, checkpoints=False) for i in range(jobs)],
        questions=[(f"question {i} about the product?", f"reference answer {i}") for i in range(rows)],
    )
    build_run(root, run)
    url = f"/experiments/{run.experiment}/runs/{store.slug(run.run_id)}"
    samples, cpu = [], []
    with client_for(root) as client:
        for _ in range(requests + 1):  # the first request warms imports and template compilation
            started, used = time.perf_counter(), time.process_time()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
            if response.status_code != 200 or "Answers side by side" not in response.text:
                raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    return statistics.median(samples[1:]), statistics.median(cpu[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100", help="jobs per run, comma-separated")
    parser.add_argument("--rows", type=int, default=500, help="eval rows per job")
    parser.add_argument("--requests", type=int, default=7, help="timed requests per run")
    parser.add_argument("--stores", default="file,s3", help="file, s3 or both")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    results: dict[str, dict[int, float]] = {}
    cpu: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tunerflow-bench-ui-") as scratch:
        scratch = Path(scratch)
        server = None
        for kind in args.stores.split(","):
            if kind == "s3":
                root, server = moto_root(scratch)
            else:
                root = (scratch / "store").as_uri()
            timed = {n: page_ms(root, n, args.rows, args.requests) for n in sizes}
            results[kind] = {n: wall for n, (wall, _) in timed.items()}
            cpu[kind] = {n: used for n, (_, used) in timed.items()}
        if server is not None:
            server.stop()
    print(f"{'store':<6} {'jobs':>5} {'rows':>5} {'median ms':>10} {'ms per job':>11} {'cpu ms':>8}")
    for kind, by_size in results.items():
        for n, ms in by_size.items():
            print(f"{kind:<6} {n:>5} {args.rows:>5} {ms:>10.1f} {ms / n:>11.2f} {cpu[kind][n]:>8.1f}")
    # The target is for a machine at rest; a loaded one slows every size alike (the growth still holds).
    print(f"load average while timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    small, large = sizes[0], sizes[-1]
    growth = {kind: (by[large] / large) / (by[small] / small) for kind, by in results.items()}
    for kind, ratio in growth.items():
        print(f"{kind}: time per job at N={large} / at N={small} = {ratio:.2f} (<= 1: no faster than linear)")
    file_ms = results.get("file", {}).get(large)
    if file_ms is not None:
        verdict = "under" if file_ms < TARGET_MS else "OVER"
        print(f"file, N={large}: {file_ms:.1f} ms, {verdict} the {TARGET_MS:.0f} ms target")
    timed_on = "file" if file_ms is not None else next(iter(results))
    value = results[timed_on][large]
    print(
        json.dumps(
            {
                "metric": f"run page server time, {large} jobs x {args.rows} rows, {timed_on} store (ms)",
                "value": round(value, 1),
                "baseline": TARGET_MS,
                "ratio": round(value / TARGET_MS, 3),
                "target": f"< {TARGET_MS:.0f} ms on file; time per job not growing with N",
                "growth": {kind: round(ratio, 3) for kind, ratio in growth.items()},
                "medians_ms": {k: {str(n): round(v, 1) for n, v in by.items()} for k, by in results.items()},
                "cpu_ms": {k: {str(n): round(v, 1) for n, v in by.items()} for k, by in cpu.items()},
                "passed": value < TARGET_MS and all(ratio <= 1.2 for ratio in growth.values()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
