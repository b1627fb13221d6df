"""The UI plugin's endpoints given hostile input (issue 16): mutated path segments (traversal, encoded
slashes, control characters, unicode, huge numbers), query values and form bodies on a stocked store.
Every answer is a page or a 4xx, never a 500 (the TestClient re-raises any exception the app lets out)."""

from __future__ import annotations

import itertools
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import event, given, settings
from hypothesis import strategies as st

from plugins.tunerflow_ui import airflow_runs, auth, stores
from plugins.tunerflow_ui.app import create_app
from plugins.tunerflow_ui.routes.compare import AirflowApi, airflow_api
from tests.fixtures import registry_store as fx
from tests.fixtures.hostile_confs import HUGE, TRAVERSAL
from tests.plugins.tunerflow_ui.conftest import viewer
from tests.tasks.config.test_hostile_confs import SETTINGS

KNOWN = {
    "experiment": [fx.EXPERIMENT],
    "run": [fx.RUN_ID, "manual__2026-01-02T03-04-05-00-00"],
    "name": [fx.REGISTRY, fx.DATASET, fx.UNREGISTERED],
    "version": [fx.VERSION, "1", "2", "3"],
    "job": ["tuna--tiny--lr3"],
}
SEGMENT = st.one_of(
    st.sampled_from([value for values in KNOWN.values() for value in values]),
    st.sampled_from(TRAVERSAL),
    st.sampled_from([str(n) for n in HUGE] + ["-1", "0", "nan", "1e999", "", " ", "%00", "%2F", "..%2F.."]),
    st.text(min_size=1, max_size=30),
)
# Each route with its path parameters in braces; a few are POST forms.
ROUTES = [
    "/experiments",
    "/experiments/{experiment}/runs/{run}",
    "/experiments/{experiment}/runs/{run}/jobs/{job}",
    "/experiments/{experiment}/runs/{run}/jobs/{job}/tensorboard/{name}",
    "/airflow/runs/{name}/{run}",
    "/airflow/task-instances/finetune_experiment/{run}/{name}/{version}",
    "/datasets",
    "/datasets/{name}",
    "/datasets/{name}/versions/{version}",
    "/datasets/{name}/versions/{version}/token_lengths.png",
    "/datasets/{name}/versions/{version}/rows/{job}",
    "/models",
    "/models/{name}",
    "/models/{name}/versions/{version}/promote",
    "/models/{name}/rollback",
    "/compare",
    "/compare/runs/{run}",
    "/static/{name}",
]
POSTS = {"/models/{name}/versions/{version}/promote", "/models/{name}/rollback", "/compare"}
COUNTER = itertools.count()


def _client(root: str) -> TestClient:
    app = create_app()
    app.dependency_overrides[auth.reader] = lambda: viewer()
    app.dependency_overrides[stores.store_root] = lambda: root
    app.dependency_overrides[airflow_runs.run_states] = lambda: lambda run_ids: {}
    refuse = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "no such run"}))
    app.dependency_overrides[airflow_api] = lambda: AirflowApi("http://airflow.test", transport=refuse)
    return TestClient(app, root_path="/tunerflow", headers={"accept": "text/html"})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = (tmp_path_factory.mktemp("hostile-ui") / "store").as_uri()
    with _client(fx.build(root)) as made:
        yield made


def _form_values() -> st.SearchStrategy[dict]:
    keys = ["csrf", "expected", "path_1", "path_2", "model_1", "connection_1", "prompt", "eval_set", "limit"]
    keys += ["temperature", "top_p", "seed", "max_new_tokens", "label_1", "temperature_1"]
    junk = st.sampled_from(["{}", "[]", "1e999", "nan", "-0"])
    value = st.one_of(st.sampled_from(TRAVERSAL), st.text(max_size=20), junk)
    return st.dictionaries(st.sampled_from(keys), value, max_size=6)


@settings(max_examples=400, **SETTINGS)
@given(
    route=st.sampled_from(ROUTES),
    segments=st.fixed_dictionaries({key: SEGMENT for key in KNOWN}),
    encode=st.booleans(),
    query=st.dictionaries(st.sampled_from(["page", "q", "version"]), st.text(max_size=12), max_size=2),
    form=_form_values(),
    csrf=st.booleans(),
)
def test_no_endpoint_answers_500_to_hostile_input(client, route, segments, encode, query, form, csrf):
    def fill(key: str) -> str:
        value = segments[key]
        # Raw: slashes and dots travel as typed (traversal); what a URL cannot carry is still encoded.
        return quote(value, safe="" if encode else "/.:@!$&'()*+,;=~-_")

    path = route
    for key in KNOWN:
        path = path.replace(f"{{{key}}}", fill(key))
    if route in POSTS:
        if csrf:
            form = {**form, "csrf": viewer().csrf}
        response = client.post(path, params=query, data=form, follow_redirects=False)
    else:
        response = client.get(path, params=query, follow_redirects=False)
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
    event(f"HTTP {response.status_code}")
