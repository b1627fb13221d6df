"""The Compare pages: the form offers what the store holds, a POST starts compare_models through
Airflow's REST API with the user's own token (a fake API records it), Airflow's refusal is shown on the
form, and a finished comparison shows every answer side by side, escaped."""

from __future__ import annotations

import json

import httpx
import pytest
from markupsafe import escape

from plugins.tunerflow_ui.routes.compare import AirflowApi, airflow_api
from tasks.contracts.compare import CompareResult, CompareSpec
from tasks.registry import versions as registry
from tasks.storage import store
from tests.tasks.compare.conftest import experiment_job, prepared_chat_dataset

RUN = "manual__2026-05-01T10:00:00+00:00"
KEY = "manual__2026-05-01T10-00-00-00-00"
SCRIPT = "<script>alert('x')</script>"
MODELS = [
    {
        "label": "tuna v1",
        "source": "registry tuna v1",
        "kind": "pytorch",
        "entry": {"name": "t", "source": {"path": "/m"}},
    },
    {"label": "my_llm", "source": "connection my_llm", "kind": "endpoint", "conn_id": "my_llm"},
]


class FakeAirflow:
    """Airflow's REST API as far as the pages use it; records every request."""

    def __init__(
        self, trigger_status: int = 200, trigger_body: dict | None = None, state: str | None = "running"
    ):
        self.requests: list[httpx.Request] = []
        self.trigger = (trigger_status, trigger_body or {"dag_run_id": RUN, "state": "queued"})
        self.state = state

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST" and request.url.path == "/api/v2/dags/compare_models/dagRuns":
            return httpx.Response(self.trigger[0], json=self.trigger[1])
        if request.method == "GET" and request.url.path.startswith("/api/v2/dags/compare_models/dagRuns/"):
            if self.state is None:
                return httpx.Response(404, json={"detail": "not found"})
            return httpx.Response(200, json={"dag_run_id": RUN, "state": self.state})
        return httpx.Response(500, json={"detail": f"unexpected {request.method} {request.url}"})


@pytest.fixture
def fake_airflow():
    return FakeAirflow()


@pytest.fixture
def client(ui_client, store_root, fake_airflow):
    def make(**who):
        made = ui_client(store_root, **who)
        api = AirflowApi("http://airflow.test", transport=httpx.MockTransport(fake_airflow.handle))
        made.app.dependency_overrides[airflow_api] = lambda: api
        return made

    return make


def _spec(root: str) -> CompareSpec:
    prefix = store.join(root, "compare", KEY)
    spec = CompareSpec(
        store_root=root,
        output=store.join(prefix, "results"),
        run_id=RUN,
        models=MODELS,
        prompts=[{"id": "typed-1", "messages": [{"role": "user", "content": f"Who are you? {SCRIPT}"}]}],
        generation={"max_new_tokens": 16},
    )
    store.write_json(store.join(prefix, "spec.json"), spec.model_dump(mode="json"))
    return spec


def _finish(root: str, spec: CompareSpec) -> None:
    answer = {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "ttft_s": 0.0421,
        "tokens_per_s": 87.5,
        "latency_s": 0.1,
    }
    result = CompareResult(
        run_id=RUN,
        prompts=spec.prompts,
        models=[
            {
                "label": "tuna v1",
                "source": "registry tuna v1",
                "kind": "pytorch",
                "temperature": 0.0,
                "load_s": 1.5,
                "answers": [{"prompt_id": "typed-1", "text": f"I am tuna {SCRIPT}", **answer}],
            },
            {
                "label": "my_llm",
                "source": "connection my_llm",
                "kind": "endpoint",
                "temperature": 0.0,
                "answers": [{"prompt_id": "typed-1", "error": "StepError: answered 401"}],
            },
        ],
        generation=spec.generation,
        device="cpu",
        finished_at="2026-05-01T10:01:00+00:00",
    )
    store.local_file(store.join(spec.output, "results.json")).write_text(
        json.dumps(result.model_dump(mode="json"))
    )
    store.commit(spec.output, result.model_dump(mode="json"))


def _form(viewer_csrf: str, **fields) -> dict:
    return {"csrf": viewer_csrf, **fields}


def _csrf(client) -> str:
    page = client.get("/compare").text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_form_offers_what_the_store_holds_and_past_comparisons(
    client, store_root, tiny_registry, tmp_path
):
    experiment_job(store_root, tmp_path, prepared_chat_dataset(store_root))
    _finish(store_root, _spec(store_root))
    page = client().get("/compare")
    assert page.status_code == 200
    text = page.text
    assert "tuna v1 (production)" in text and "tuna v1 onnx-int8 (production)" in text
    assert "smollm2-135m-instruct" in text  # the catalog
    assert "exp / manual__1 / qa|tiny|base" in text  # a recent experiment job
    assert "qa @ v1" in text  # a prepared dataset version as an eval set
    job = escape(json.dumps({"experiment": "exp", "job": "qa--tiny--base", "run": "manual__1"}))
    assert f'value="{job}"' in text
    assert "/tunerflow/compare/runs/manual__2026-05-01T10%3A00%3A00%2B00%3A00" in text
    assert "&lt;script&gt;" in text and SCRIPT not in text
    assert 'name="csrf"' in text


@pytest.fixture
def tiny_registry(store_root):
    entry = registry.register(store_root, "tuna", {"exports": {"onnx-int8": "file:///x/onnx-int8"}})
    registry.set_production(store_root, "tuna", entry["version"], None)


def test_compare_starts_a_run_as_the_user_and_redirects_to_it(client, fake_airflow):
    made = client()
    fields = _form(
        _csrf(made),
        model_1=json.dumps({"registry": "tuna", "version": 1}),
        connection_2="my_llm",
        endpoint_model_2="gpt-4o-mini",
        temperature_2="0.7",
        prompt="Who are you?",
        max_new_tokens="32",
    )
    response = made.post("/compare", data=fields, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/tunerflow/compare/runs/manual__2026-05-01T10%3A00%3A00%2B00%3A00"
    [trigger] = [r for r in fake_airflow.requests if r.method == "POST"]
    assert trigger.headers["authorization"] == "Bearer t0ken-of-ada"
    assert str(trigger.url) == "http://airflow.test/api/v2/dags/compare_models/dagRuns"
    body = json.loads(trigger.content)
    assert body["logical_date"] is None
    assert body["conf"] == {
        "models": [
            {"registry": "tuna", "version": 1},
            {"connection": "my_llm", "model": "gpt-4o-mini", "temperature": 0.7},
        ],
        "prompts": ["Who are you?"],
        "max_new_tokens": 32,
    }


def test_airflows_refusal_is_shown_on_the_form(client, fake_airflow):
    fake_airflow.trigger = (400, {"detail": f"Invalid input for param models: {SCRIPT} is not valid"})
    made = client()
    fields = _form(_csrf(made), path_1="/m/a", path_2="/m/b", prompt="hi")
    response = made.post("/compare", data=fields)
    assert response.status_code == 400
    assert "Airflow refused the run (400): Invalid input for param models" in response.text
    assert SCRIPT not in response.text and "&lt;script&gt;" in response.text
    assert 'value="/m/a"' in response.text  # what the user typed is kept


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path_1": "/m/a", "prompt": "hi"}, "choose at least two models"),
        (
            {"path_1": "/m/a", "connection_1": "c", "path_2": "/b", "prompt": "hi"},
            "model 1: choose from the list",
        ),
        ({"path_1": "/a", "path_2": "/b"}, "type a prompt, or choose an eval set"),
        (
            {"path_1": "/a", "path_2": "/b", "prompt": "hi", "temperature": "hot"},
            "temperature: &#39;hot&#39; is not a number",  # escaped, as all the page shows
        ),
    ],
)
def test_an_incomplete_form_is_refused_before_airflow_is_asked(client, fake_airflow, fields, message):
    made = client()
    response = made.post("/compare", data=_form(_csrf(made), **fields))
    assert response.status_code == 400 and message in response.text
    assert not [r for r in fake_airflow.requests if r.method == "POST"]


def test_compare_needs_the_form_token_and_the_right_to_run(client, fake_airflow):
    fields = {"path_1": "/a", "path_2": "/b", "prompt": "hi"}
    assert client().post("/compare", data={**fields, "csrf": "forged"}).status_code == 403
    read_only = client(can_compare=False)
    assert read_only.post("/compare", data=fields).status_code == 403
    assert "needs the right to run" in read_only.get("/compare").text
    assert fake_airflow.requests == []


def test_a_running_comparison_refreshes_itself_and_asks_airflow_as_the_user(client, store_root, fake_airflow):
    _spec(store_root)
    page = client().get(f"/compare/runs/{RUN}")
    assert page.status_code == 200
    assert '<meta http-equiv="refresh"' in page.text and "badge running" in page.text
    assert "tuna v1" in page.text and "my_llm" in page.text
    [asked] = fake_airflow.requests
    assert asked.headers["authorization"] == "Bearer t0ken-of-ada"


def test_a_finished_comparison_shows_the_answers_side_by_side_escaped(client, store_root, fake_airflow):
    _finish(store_root, _spec(store_root))
    page = client().get(f"/compare/runs/{RUN}")
    text = page.text
    assert page.status_code == 200 and "refresh" not in text and "badge success" in text
    assert "I am tuna &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text and SCRIPT not in text
    assert "12 prompt + 5 completion tokens" in text and "TTFT 42.1 ms" in text and "87.5 tokens/s" in text
    assert "StepError: answered 401" in text
    assert 'data-chart="tokens-per-s-data"' in text
    assert fake_airflow.requests == []  # the store said it is done


def test_a_refused_conf_shows_why(client, store_root, fake_airflow):
    fake_airflow.state = "failed"
    store.write_json(
        store.join(store_root, "compare", KEY, "error.json"),
        {"run_id": RUN, "message": "models.1.registry: no registry 'nope'"},
    )
    page = client().get(f"/compare/runs/{RUN}")
    assert "badge failed" in page.text and "no registry &#39;nope&#39;" in page.text
    listed = client().get("/compare").text
    assert "manual__2026-05-01T10:00:00+00:00</a>" in listed and "badge failed" in listed


def test_an_unknown_comparison_is_404(client, fake_airflow):
    fake_airflow.state = None
    assert client().get("/compare/runs/nope").status_code == 404


def test_a_typed_model_path_outside_the_allowed_roots_is_refused_on_the_form(
    client, fake_airflow, store_root, monkeypatch
):
    monkeypatch.delenv("TUNERFLOW_ALLOWED_PATHS")  # the api-server's default: the store, include/data...
    made = client()
    fields = {"path_1": "/etc", "path_2": f"{store.local_path(store_root)}/models/../../..", "prompt": "hi"}
    response = made.post("/compare", data=_form(_csrf(made), **fields))
    assert response.status_code == 400
    assert "model 1: &#39;/etc&#39; is outside the directories this deployment allows" in response.text
    assert not [r for r in fake_airflow.requests if r.method == "POST"]
    fields["path_1"] = f"{store.local_path(store_root)}/models/a"
    response = made.post("/compare", data=_form(_csrf(made), **fields))
    assert response.status_code == 400 and "model 2: " in response.text
