"""tunerflow's pages inside the real Airflow UI: the session's `airflow standalone` with the plugin loaded
from the installed package, driven by a real Chromium (tests/fixtures/browser.py) and over HTTP with
the real auth manager's tokens.

In order: the plugin is loaded; every route refuses an anonymous caller, a read-only viewer may not
act, an admin may; in the browser, log in through Airflow's login page, find tunerflow's pages in
Airflow's navigation and see a page load in Airflow's iframe; then the pages' content after the session's
finished tiny run: the experiment, its run's leaderboard with the winner and the answers (inside Airflow
and on its own), a job, and the registry's production version. Each step's screenshot is kept (the path
is printed at the end).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi.routing import APIRoute

from plugins.tunerflow_ui.app import URL_PREFIX, create_app
from tasks.registry.production import production
from tasks.storage import layout, store
from tests.fixtures.airflow_standalone import DAG_ID, USERS
from tests.fixtures.browser import launch, log_in, open_from_nav, plugin_frame, resized

pytestmark = pytest.mark.slow

EXPERIMENT = "tiny-exp"  # tests/fixtures/confs.py's experiment, whose registry takes its name
NAV_PAGES = ("Experiments", "Models", "Datasets", "Compare")
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _routes() -> list[tuple[str, str]]:
    """(method, URL) of every route of the `/tunerflow` app, path parameters filled with `0` (a number
    where one is wanted, a name nothing has)."""
    return sorted(
        (method, URL_PREFIX + _PARAM.sub("0", route.path))
        for route in create_app().routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )


def _actions() -> list[str]:
    return [url for method, url in _routes() if method == "POST"]


@pytest.fixture(scope="module")
def anonymous(airflow_server):
    with httpx.Client(base_url=airflow_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def as_user(airflow_server):
    """`as_user(name)`: a client holding the JWT Airflow gave that user."""
    clients: list[httpx.Client] = []

    def client(username: str) -> httpx.Client:
        token = airflow_server.token(username)
        clients.append(
            httpx.Client(
                base_url=airflow_server.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            )
        )
        return clients[-1]

    yield client
    for each in clients:
        each.close()


def test_the_api_server_loads_the_tunerflow_plugin(airflow_server):
    response = airflow_server.http.get("/api/v2/plugins")
    response.raise_for_status()
    [plugin] = [p for p in response.json()["plugins"] if p["name"] == "tunerflow"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == [URL_PREFIX]
    nav = {view["name"]: view for view in plugin["external_views"] if view["destination"] == "nav"}
    assert set(nav) == set(NAV_PAGES)
    assert nav["Experiments"]["url_route"] == "tunerflow-experiments"


@pytest.mark.parametrize("credentials", [None, "Bearer not-a-token"], ids=["no-credentials", "forged"])
def test_every_route_refuses_an_anonymous_caller(anonymous, credentials):
    headers = {"Authorization": credentials} if credentials else {}
    answers = {(m, url): anonymous.request(m, url, headers=headers).status_code for m, url in _routes()}
    assert answers and set(answers.values()) == {401}, answers


def test_every_route_refuses_a_forged_session_cookie(airflow_server):
    with httpx.Client(base_url=airflow_server.base_url, timeout=30, cookies={"_token": "forged"}) as client:
        answers = {(m, url): client.request(m, url).status_code for m, url in _routes()}
    assert set(answers.values()) == {401}, answers


def test_a_read_only_viewer_reads_but_may_not_act(as_user):
    viewer = as_user("viewer")
    assert viewer.get(f"{URL_PREFIX}/static/tunerflow.css").status_code == 200
    assert _actions(), "the app has no action (POST) routes"
    answers = {url: viewer.post(url).status_code for url in _actions()}
    assert set(answers.values()) == {403}, answers


def test_an_admin_is_let_through_to_every_action(as_user):
    admin = as_user("admin")
    assert _actions(), "the app has no action (POST) routes"
    # The names are `0`: nothing exists under them, so no action changes anything here.
    answers = {url: admin.post(url).status_code for url in _actions()}
    assert not {401, 403} & set(answers.values()), answers
    assert max(answers.values()) < 500, answers


# --- the browser: Airflow's login, navigation and iframe ---------------------------------------------


@pytest.fixture(scope="module")
def admin_page(playwright, airflow_server, screenshots, tmp_path_factory):
    """A Chromium tab logged in to Airflow as admin through the login page (module-wide: one login)."""
    context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
    page = context.new_page()
    log_in(page, airflow_server.base_url, "admin", USERS["admin"][1])
    screenshots.take(page, "airflow-home-after-login")
    yield page
    context.close()


@pytest.fixture
def tab(admin_page, screenshots, request):
    """The logged-in tab; its last state is kept as a screenshot named after the test, pass or fail."""
    yield admin_page
    screenshots.take(admin_page, f"{request.node.name}-end")


def test_logging_in_through_airflows_login_page_sets_the_session_cookie(tab, airflow_server):
    cookies = {c["name"] for c in tab.context.cookies(airflow_server.base_url)}
    assert "_token" in cookies  # what the tunerflow pages authenticate the browser with
    assert tab.get_by_test_id("nav-sidebar").is_visible()


def test_airflows_navigation_lists_tunerflows_pages(tab, airflow_server, screenshots):
    tab.goto(f"{airflow_server.base_url}/")
    tab.get_by_role("button", name="Plugins").click()
    tab.get_by_role("menuitem", name="tunerflow").hover()
    for name in NAV_PAGES:
        item = tab.get_by_role("menuitem", name=name, exact=True)
        item.wait_for()
        assert item.get_attribute("href") == f"/plugin/tunerflow-{name.lower()}"
    screenshots.take(tab, "navigation-plugins-tunerflow-menu")


def test_experiments_opens_from_the_navigation_inside_airflow(tab, airflow_server, screenshots):
    first, frame = open_from_nav(tab, airflow_server.base_url, "Experiments")
    assert tab.url == f"{airflow_server.base_url}/plugin/tunerflow-experiments"
    assert (first.url, first.status) == (f"{airflow_server.base_url}{URL_PREFIX}/experiments", 200)
    nav = frame.locator("nav.top")
    nav.wait_for()
    for name in NAV_PAGES:
        assert nav.get_by_role("link", name=name, exact=True).get_attribute("href") == (
            f"{URL_PREFIX}/{name.lower()}"
        )
    assert "admin" in nav.inner_text()
    # The stylesheet came through the same session cookie: the layout is styled, not raw HTML.
    assert frame.evaluate("() => document.styleSheets.length") >= 1
    screenshots.take(tab, "experiments-in-airflow")


# --- the pages' content after the session's finished run --------------------------------------------


def _run_prefix(airflow_server, finished_run) -> str:
    return layout.run(airflow_server.store_root, EXPERIMENT, finished_run["run_id"])


def _leaderboard(airflow_server, finished_run) -> dict:
    return store.read_json(store.join(_run_prefix(airflow_server, finished_run), "leaderboard.json"))


def _references(airflow_server, finished_run, job_id: str) -> set[str]:
    predictions = store.join(_run_prefix(airflow_server, finished_run), "jobs", job_id, "evaluate")
    lines = store.local_path(store.join(predictions, "predictions.jsonl")).read_text().splitlines()
    return {json.loads(line)["reference"] for line in lines}


def _text(frame) -> str:
    """What the page shows, whitespace collapsed."""
    return " ".join(frame.locator("body").inner_text().split())


def test_the_experiment_and_its_run_are_listed(tab, airflow_server, finished_run, screenshots):
    _, frame = open_from_nav(tab, airflow_server.base_url, "Experiments")
    run_slug = store.slug(finished_run["run_id"])
    link = frame.locator(f'a[href$="/experiments/{EXPERIMENT}/runs/{run_slug}"]').first
    link.wait_for()
    assert EXPERIMENT in _text(frame)
    screenshots.take(tab, "experiments-listed-in-airflow")


def test_the_run_page_shows_the_leaderboard_with_the_winner_and_the_answers(
    tab, airflow_server, finished_run, screenshots
):
    board = _leaderboard(airflow_server, finished_run)
    run_slug = store.slug(finished_run["run_id"])
    _, frame = open_from_nav(tab, airflow_server.base_url, "Experiments")
    frame.locator(f'a[href$="/experiments/{EXPERIMENT}/runs/{run_slug}"]').first.click()
    frame.wait_for_url(re.compile(rf".*{URL_PREFIX}/experiments/{EXPERIMENT}/runs/{re.escape(run_slug)}$"))
    frame.locator("table").first.wait_for()
    winner = board["winner"]["label"]
    assert frame.locator("table", has_text=winner).count() >= 1
    shown = _text(frame)
    assert all(row["label"] in shown for row in board["rows"])
    # Answers side by side: the references of the eval questions stand beside the jobs' answers.
    assert any(
        reference in shown
        for reference in _references(airflow_server, finished_run, board["winner"]["job_id"])
    )
    screenshots.take(tab, "run-page-in-airflow", frame)


def test_a_job_page_opens_from_its_run_page(tab, airflow_server, finished_run, screenshots):
    board = _leaderboard(airflow_server, finished_run)
    job = board["winner"]
    run_slug = store.slug(finished_run["run_id"])
    _, frame = open_from_nav(tab, airflow_server.base_url, "Experiments")
    frame.locator(f'a[href$="/experiments/{EXPERIMENT}/runs/{run_slug}"]').first.click()
    frame.locator(f'a[href$="/runs/{run_slug}/jobs/{job["job_id"]}"]').first.click()
    frame.wait_for_url(re.compile(rf".*/runs/{re.escape(run_slug)}/jobs/{re.escape(job['job_id'])}$"))
    frame.locator("h1").wait_for()
    shown = _text(frame)
    assert job["label"] in shown or job["job_id"] in shown
    assert "learning_rate" in shown  # the resolved hyperparameters
    screenshots.take(tab, "job-page", frame)


def test_the_run_view_on_an_airflow_run_shows_its_experiment(tab, airflow_server, finished_run, screenshots):
    board = _leaderboard(airflow_server, finished_run)
    run_id = finished_run["run_id"]
    tab.goto(f"{airflow_server.base_url}/dags/{DAG_ID}/runs/{run_id}/plugin/tunerflow-run")
    frame = plugin_frame(tab)
    frame.wait_for_url(re.compile(rf".*/experiments/{EXPERIMENT}/runs/{re.escape(store.slug(run_id))}$"))
    frame.locator("table", has_text=board["winner"]["label"]).first.wait_for()
    screenshots.take(tab, "airflow-run-experiment-view", frame)


def test_models_shows_the_version_in_production(tab, airflow_server, finished_run, screenshots):
    live = production(airflow_server.store_root, EXPERIMENT)
    assert live is not None, "the finished run promoted nothing"
    _, frame = open_from_nav(tab, airflow_server.base_url, "Models")
    frame.locator(f'a[href$="/models/{EXPERIMENT}"]').first.click()
    frame.wait_for_url(re.compile(rf".*{URL_PREFIX}/models/{EXPERIMENT}$"))
    frame.locator("h1").wait_for()
    shown = _text(frame)
    assert re.search("production", shown, re.I)
    assert live["entry"]["label"] in shown
    assert re.search(rf"\bv?{live['version']}\b", shown)
    run_slug = live["entry"]["run_uri"].rstrip("/").rsplit("/", 1)[1]
    assert frame.locator(f'a[href*="/runs/{run_slug}"]').count() >= 1  # the run it came from
    screenshots.take(tab, "model-page", frame)


def test_the_run_page_on_its_own(tab, airflow_server, finished_run, screenshots):
    """The run page outside Airflow's frame (a link opened in a tab of its own), as the docs show it."""
    board = _leaderboard(airflow_server, finished_run)
    url = f"{URL_PREFIX}/experiments/{EXPERIMENT}/runs/{store.slug(finished_run['run_id'])}"
    with resized(tab, width=1300):
        response = tab.goto(f"{airflow_server.base_url}{url}")
        assert response.status == 200
        tab.locator("table", has_text=board["winner"]["label"]).first.wait_for()
        assert tab.locator("nav.top").get_by_role("link", name="Experiments", exact=True).is_visible()
        assert tab.locator("canvas").count() >= 2  # the loss curves and the primary metric per job
        screenshots.take(tab, "run-page-standalone")
