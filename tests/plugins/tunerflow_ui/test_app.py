"""The app's frame: every route refuses an anonymous caller, static files stay inside static/, the
layout escapes what it shows, and the plugin declares its views where Airflow expects them."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from plugins.tunerflow_ui.app import create_app


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _routes():
    return [(m, r.path) for r in create_app().routes if isinstance(r, APIRoute) for m in sorted(r.methods)]


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_route_refuses_an_anonymous_caller(method, path):
    with TestClient(create_app()) as client:
        response = client.request(method, _concrete(path))
    assert response.status_code == 401, (method, path, response.text)
    assert "log in" in response.json()["detail"].lower()


def test_a_browser_is_told_to_log_in(tmp_path):
    with TestClient(create_app(), root_path="/tunerflow") as client:
        response = client.get("/", headers={"accept": "text/html"})
    assert response.status_code == 401
    assert 'href="/"' in response.text and "Log in to Airflow" in response.text


def test_static_files_are_served_and_paths_cannot_leave_static(ui_client, tmp_path):
    client = ui_client(tmp_path.as_uri())
    script = client.get("/static/vendor/chart.umd.min.js")
    assert script.status_code == 200 and "Chart" in script.text
    assert client.get("/static/tunerflow.css").headers["content-type"].startswith("text/css")
    for escape_attempt in ("../app.py", "..%2Fapp.py", "vendor/../../auth.py"):
        assert client.get(f"/static/{escape_attempt}").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/static/" + "a" * 5000, "/experiments/" + "a" * 5000 + "/runs/r"],
)
def test_a_name_too_long_for_the_filesystem_is_a_404_not_a_500(ui_client, tmp_path, path):
    """Found by tests/plugins/tunerflow_ui/test_hostile_routes.py: OSError ENAMETOOLONG escaped as a 500."""
    response = ui_client((tmp_path / "store").as_uri()).get(path)
    assert response.status_code == 404 and "too long" in response.text


def test_home_redirects_to_experiments(ui_client, tmp_path):
    response = ui_client(tmp_path.as_uri()).get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/tunerflow/experiments"


def test_the_plugin_declares_the_app_and_its_views():
    from plugins.tunerflow_ui.plugin import TunerflowPlugin

    [app] = TunerflowPlugin.fastapi_apps
    assert app["url_prefix"] == "/tunerflow"
    views = {v["name"]: v for v in TunerflowPlugin.external_views}
    assert {"Experiments", "Models", "Datasets", "Compare", "Experiment", "Job"} <= set(views)
    assert views["Experiment"]["destination"] == "dag_run"
    assert views["Job"]["destination"] == "task_instance"
    assert all(not v["href"].startswith("/") for v in views.values())  # relative to Airflow's base URL


def test_the_entry_point_names_the_plugin():
    from importlib.metadata import entry_points

    [entry] = [e for e in entry_points(group="airflow.plugins") if e.name == "tunerflow"]
    assert entry.value == "plugins.tunerflow_ui.plugin:TunerflowPlugin"


def test_every_template_and_static_file_ships_in_the_wheel():
    """The package-data globs in pyproject.toml must match every file the pages need, or an installed
    tunerflow (the Airflow image, `pip install tunerflow[airflow]`) serves 404s and template errors."""
    import fnmatch
    import tomllib

    from tests.conftest import REPO

    package = REPO / "plugins" / "tunerflow_ui"
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "plugins.tunerflow_ui"
    ]
    needed = [
        path.relative_to(package).as_posix()
        for folder in ("templates", "static")
        for path in (package / folder).rglob("*")
        if path.is_file()
    ]
    assert needed
    missing = [name for name in needed if not any(fnmatch.fnmatchcase(name, g) for g in globs)]
    assert not missing, f"add package-data globs for {missing}"
