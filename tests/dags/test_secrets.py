"""Secrets never leak: known values planted in every place a credential can come from (the store's
`aws_default` connection with a session token in its extra, the AWS_* keys of boto3's chain, the LLM
judge's `tunerflow_judge` connection with an API key and a secret header, HF_TOKEN) must not appear,
as they are, URL-encoded or base64-encoded, in any task log line (as Airflow's masker writes it), XCom
value, rendered template field, object the run stored on S3 (moto's server) or its local mirror, the
report, the dataset card, or a pod spec of the kubernetes backend. A scoring plugin that prints every
credential of its environment shows that the masker knows each one: its lines read ***."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.fixtures.confs import tiny_conf
from tests.fixtures.s3_objects import keys_under, s3_client

# '/' and '+' make the URL-encoded and base64 forms differ from the value itself.
S3_SECRET = "s3Conn/Secret+Key-7d41e9"
S3_SESSION = "s3Session/Token+a8c2f1"
JUDGE_KEY = "sk-judge/Key+5e0b93d7"
JUDGE_HEADER = "judge-hdr/Secret+19c4"
HF_TOKEN = "hf_planted/Token+6f2d8a"
AWS_ENV_SECRET = "envAws/Secret+c3e7b5"
PLANTED = {
    "aws_default password": S3_SECRET,
    "aws_default extra.aws_session_token": S3_SESSION,
    "tunerflow_judge password": JUDGE_KEY,
    "tunerflow_judge extra.headers": JUDGE_HEADER,
    "HF_TOKEN": HF_TOKEN,
    "AWS_SECRET_ACCESS_KEY": AWS_ENV_SECRET,
}

# A metric plugin that prints every credential its process can see, as a careless one might.
LEAKY_PLUGIN = """
import json
import os
from urllib.parse import quote

import datasets
import evaluate

GREATER_IS_BETTER = True


def _secrets():
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_"):
            conn = json.loads(value)
            extra = conn.get("extra") or {}
            yield conn.get("password")
            yield extra.get("aws_session_token")
            yield from (extra.get("headers") or {}).values()
        elif name in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY"):
            yield value


class LeakyEnv(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="prints the credentials in its environment",
            citation="",
            inputs_description="",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        for value in _secrets():
            if value:
                print(f"LEAKY {value} quoted {quote(value, safe='')}", flush=True)
        return {"leaky_env": 0.0}
"""


def forms(secret: str) -> set[str]:
    """The secret as it is, URL-encoded, and base64-encoded at each of the three alignments it can have
    inside a longer encoded text (only the characters it alone determines), standard and URL-safe."""
    found = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    raw = secret.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode()
            start = 4 if offset else 0
            end = (offset + len(raw)) // 3 * 4
            found.add(text[start:end])
    return found


def leaks(text: str) -> list[str]:
    """Which planted secrets `text` holds, in any form."""
    return sorted(where for where, secret in PLANTED.items() if any(form in text for form in forms(secret)))


def test_forms_find_a_secret_inside_base64_and_urls():
    for prefix in ("", "a", "ab"):
        encoded = base64.b64encode(f"{prefix}x:{HF_TOKEN}y".encode()).decode()
        assert leaks(encoded) == ["HF_TOKEN"], prefix
    assert leaks(f"https://h/?k={quote_plus(JUDGE_KEY)}") == ["tunerflow_judge password"]
    assert leaks("nothing here") == []


@pytest.fixture
def dag(airflow_db):
    import importlib
    import sys

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "dags"))
    import finetune_experiment

    return importlib.reload(finetune_experiment).dag


@pytest.fixture
def planted(s3_store_root, s3_endpoint, tmp_path, monkeypatch):
    """Every credential source set to a planted value: the store through `aws_default` (an environment
    connection, as a Secret would set it), the judge on a local OpenAI-compatible server through
    `tunerflow_judge`, HF_TOKEN and an AWS_* key in the worker's environment, and the leaky plugin."""
    from tests.fixtures.openai_server import OpenAIServer

    store_conn = {
        "conn_type": "aws",
        "login": "AKIASECRETSTEST",
        "password": S3_SECRET,
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1", "aws_session_token": S3_SESSION},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(store_conn))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_ENV_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    plugins = tmp_path / "plugins"
    (plugins / "leaky_env").mkdir(parents=True)
    (plugins / "leaky_env" / "leaky_env.py").write_text(LEAKY_PLUGIN)
    monkeypatch.setenv("TUNERFLOW_SCORING_PLUGINS", str(plugins))
    with OpenAIServer(api_key=JUDGE_KEY, model="judge-1") as server:
        judge_conn = {
            "conn_type": "http",
            "host": server.base_url,
            "password": JUDGE_KEY,
            "extra": {"model": server.model, "headers": {"X-Judge-Secret": JUDGE_HEADER}},
        }
        monkeypatch.setenv("AIRFLOW_CONN_TUNERFLOW_JUDGE", json.dumps(judge_conn))
        yield server


def _objects(root: str, endpoint: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    bucket, keys = keys_under(client, root)
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def _airflow_records(run_id: str) -> dict[str, str]:
    """Every XCom value and rendered template field the run left in Airflow's metadata DB."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    found = {}
    with create_session() as session:
        for x in session.query(XComModel).filter(XComModel.run_id == run_id):
            found[f"xcom {x.task_id}[{x.map_index}] {x.key}"] = json.dumps(x.value, default=str)
        for r in session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.run_id == run_id
        ):
            found[f"rendered {r.task_id}[{r.map_index}]"] = json.dumps(r.rendered_fields, default=str)
    return found


@pytest.mark.slow
def test_no_planted_secret_leaks_from_a_whole_experiment(
    dag, tiny_model_dir, s3_store_root, s3_endpoint, planted, tmp_path, capfd, caplog
):
    from airflow.sdk._shared.secrets_masker import redact

    conf = tiny_conf(
        tiny_model_dir,
        hparams=[{"name": "a", "preset": "lora-fast", "max_steps": 2}],
        scoring={
            "metrics": ["rouge_l", "llm_judge", "leaky_env"],
            "primary": "rouge_l",
            "max_new_tokens": 4,
            "max_samples": 4,
            "judge": {"backoff_s": 0},
        },
        promotion={"registry_name": "tiny-secrets"},
    )
    caplog.set_level(logging.INFO)
    run = dag.test(run_conf=conf)
    output = capfd.readouterr()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert planted.requests, "the judge was never called"

    # Task logs, as the supervisor writes them: every line through Airflow's masker. A step's output
    # reaches the task's log as the records of tunerflow.local; whatever else was printed is read too.
    lines = caplog.text.splitlines() + (output.out + output.err).splitlines()
    shown = [redact(line) for line in lines]
    leaky = [line for line in shown if "LEAKY " in line]
    assert leaky, "the leaky plugin printed nothing: it did not run"
    unmasked = sorted({line.split("LEAKY ", 1)[1] for line in leaky if "LEAKY *** quoted ***" not in line})
    assert unmasked == []
    assert len({line.split("LEAKY ", 1)[1] for line in leaky}) == 1  # every value masked alike
    logged = [(where, line) for line in shown for where in leaks(line)]
    assert logged == [], logged[:5]

    # XComs and rendered template fields.
    records = _airflow_records(run.run_id)
    assert any(name.startswith("xcom ") for name in records)
    assert [(name, leaks(text)) for name, text in records.items() if leaks(text)] == []

    # Every object of the store (specs, results, predictions, checkpoints, the report, the dataset card)
    # and every file of the local mirror.
    objects = _objects(s3_store_root, s3_endpoint)
    assert any(key.endswith("/report/index.html") for key in objects)
    assert any(
        key.startswith(s3_store_root.split("/", 3)[3] + "/datasets/") and key.endswith("/README.md")
        for key in objects
    ), sorted(objects)[:20]
    stored = {key: body.decode("latin-1") for key, body in objects.items()}
    mirror = Path(tmp_path / "cache")
    stored |= {str(p): p.read_bytes().decode("latin-1") for p in mirror.rglob("*") if p.is_file()}
    assert [(key, leaks(text)) for key, text in stored.items() if leaks(text)] == []


# --- the kubernetes backend: what a pod would be given -------------------------------------------------


def _pods(monkeypatch, tmp_path):
    """(task id, the pod request) of every heavy task of finetune_experiment and compare_models on the
    kubernetes backend, rendered with the argv it would get at run time (no cluster)."""
    import importlib.util

    import yaml

    from tasks.pipeline.plan import step_argv
    from tests.conftest import REPO
    from tests.dags.test_kubernetes_dag import HEAVY, SETTINGS, _load_dag, _render

    config = tmp_path / "kubernetes.yaml"
    config.write_text(yaml.safe_dump({**SETTINGS, "env_from_secrets": ["tunerflow-credentials"]}))
    finetune = _load_dag(monkeypatch, "kubernetes", str(config))
    for task_id in sorted(HEAVY):
        yield task_id, _render(finetune, task_id)[2]
    spec = importlib.util.spec_from_file_location(
        "compare_models_secrets", REPO / "dags" / "compare_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    task = module.dag.get_task("compare_models")
    task.arguments = step_argv("compare_models", "file:///data/tunerflow/comparisons/c/compare.json")
    yield "compare_models", task.pod_operator().build_pod_request_obj(dry_run=True)


def test_pods_get_credentials_only_as_secret_references(monkeypatch, tmp_path):
    from kubernetes.client import ApiClient

    # The worker holds every planted credential, connections included, as a deployment's would.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "password": S3_SECRET}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_TUNERFLOW_JUDGE",
        json.dumps({"conn_type": "http", "password": JUDGE_KEY, "extra": {"headers": {"X": JUDGE_HEADER}}}),
    )
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_ENV_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", S3_SESSION)
    rendered = list(_pods(monkeypatch, tmp_path))
    assert {task_id for task_id, _ in rendered} >= {"train", "evaluate", "score_champion", "compare_models"}
    for task_id, pod in rendered:
        manifest = json.dumps(ApiClient().sanitize_for_serialization(pod))
        assert leaks(manifest) == [], (task_id, leaks(manifest))
        for container in pod.spec.containers:
            for env in container.env or []:
                # A literal value is a plain setting; a credential is a reference to a Secret.
                assert env.value_from is None or env.value_from.secret_key_ref is not None, (task_id, env)
                assert not any(word in env.name.upper() for word in ("SECRET", "TOKEN", "PASSWORD", "CONN_"))
            for source in container.env_from or []:
                assert source.config_map_ref is None and source.secret_ref is not None, (task_id, source)
        base = pod.spec.containers[0]
        assert [source.secret_ref.name for source in base.env_from] == ["tunerflow-credentials"], task_id
