"""The UI app in-process: `ui_client(store_root, ...)` builds the app with the caller and the store
replaced through FastAPI's dependency overrides (the real checks against Airflow's auth manager are
exercised on a real `airflow standalone` in tests/integration/)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from plugins.tunerflow_ui import airflow_runs, auth, stores
from plugins.tunerflow_ui.app import create_app


def viewer(can_edit: bool = True, can_compare: bool = True, name: str = "ada") -> auth.Viewer:
    return auth.Viewer(username=name, can_edit=can_edit, can_compare=can_compare, token="t0ken-of-" + name)


@pytest.fixture
def ui_client():
    clients: list[TestClient] = []

    def make(store_root: str, **who) -> TestClient:
        app = create_app()
        app.dependency_overrides[auth.reader] = lambda: viewer(**who)
        app.dependency_overrides[stores.store_root] = lambda: store_root
        # No Airflow metadata DB in these tests: run states come from the store.
        app.dependency_overrides[airflow_runs.run_states] = lambda: lambda run_ids: {}
        client = TestClient(app, root_path="/tunerflow", headers={"accept": "text/html"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
