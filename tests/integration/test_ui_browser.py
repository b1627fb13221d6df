"""tunerflow's pages inside the real Airflow UI: the session's `airflow standalone` with the plugin loaded
from the installed package, driven by a real Chromium (tests/fixtures/browser.py) and over HTTP with
the real auth manager's tokens.

In order: the plugin is loaded; every route refuses an anonymous caller, a read-only viewer may not
act, an admin may; in the browser, log in through Airflow's login page, find tunerflow's pages in
Airflow's navigation and see a page load in Airflow's iframe; then the pages' content after the session's
finished tiny run: the experiment, its run's leaderboard with the winner and the answers (inside Airflow
and on its own), a job, the registry's production version and a dataset version; then what a person
starts from the pages: a comparison from the Compare page, run by Airflow as that person, and the demo
experiment from Airflow's trigger form, chosen without typing JSON. Each step's screenshot is kept (the
path is printed at the end).

The demo comes last and is failed through REST once its conf is validated (the demo lasts some 12
minutes): the test returns only when none of its tasks or processes is left, so the REST tests sharing
the server (test_rest_api.py, which pytest runs first) never wait behind it in either order.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import httpx
import pytest
from fastapi.routing import APIRoute

from plugins.tunerflow_ui.app import URL_PREFIX, create_app
from tasks.config.experiment import load_experiment, parse_experiment
from tasks.config.form import TEMPLATE, load_conf, templates
from tasks.config.params import DEMO, demo_conf_path
from tasks.registry.production import production
from tasks.storage import layout, store
from tests.fixtures.airflow_standalone import COMPARE_DAG_ID, DAG_ID, USERS
from tests.fixtures.browser import (
    choose,
    launch,
    log_in,
    open_from_nav,
    plugin_frame,
    resized,
    trigger_form,
    wait_for_count,
)

pytestmark = pytest.mark.slow

EXPERIMENT = "tiny-exp"  # tests/fixtures/confs.py's experiment, whose registry takes its name
NAV_PAGES = ("Experiments", "Models", "Datasets", "Compare")
PROMPT = "Who are you?"
# Two tiny models, one after the other, on a machine the whole session shares.
COMPARE_TIMEOUT_MS = 300_000
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
    route = f"{airflow_server.base_url}/plugin/tunerflow-experiments"
    # Airflow's UI may mirror the iframe's own path after the route once the page has loaded (seen on a
    # loaded machine): either address opens the same page.
    assert tab.url in (route, f"{route}{URL_PREFIX}/experiments"), tab.url
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


def test_a_dataset_version_page_shows_its_rows_and_token_lengths(
    tab, airflow_server, finished_run, screenshots
):
    dataset = production(airflow_server.store_root, EXPERIMENT)["entry"]["dataset"]
    name, version = dataset["name"], dataset["version"]
    _, frame = open_from_nav(tab, airflow_server.base_url, "Datasets")
    frame.locator(f'a[href$="/datasets/{name}"]').first.click()
    frame.locator(f'a[href$="/datasets/{name}/versions/{version}"]').first.click()
    frame.wait_for_url(re.compile(rf".*{URL_PREFIX}/datasets/{name}/versions/{version}$"))
    frame.locator("h1").wait_for()
    for split, count in dataset["counts"].items():
        row = frame.locator("tr", has=frame.get_by_role("cell", name=split, exact=True))
        assert row.inner_text().split() == [split, str(count)]
    assert frame.locator('canvas[data-chart="token-lengths-data"]').count() == 1
    screenshots.take(tab, "dataset-version-page", frame)


def test_a_comparison_started_on_the_compare_page_runs_as_the_user(
    tab, airflow_server, finished_run, screenshots
):
    # The registry's production version and the finished run's runner-up: two different models.
    live = production(airflow_server.store_root, EXPERIMENT)
    run_slug = store.slug(finished_run["run_id"])
    board = _leaderboard(airflow_server, finished_run)
    [other] = [r for r in board["rows"] if r["kind"] == "train" and r["job_id"] != board["winner"]["job_id"]]
    _, frame = open_from_nav(tab, airflow_server.base_url, "Compare")
    frame.locator("select[name=model_1]").select_option(label=f"{EXPERIMENT} v{live['version']} (production)")
    frame.locator("select[name=model_2]").select_option(label=f"{EXPERIMENT} / {run_slug} / {other['label']}")
    frame.locator("textarea[name=prompt]").fill(PROMPT)
    frame.get_by_role("button", name="Compare", exact=True).click()
    frame.wait_for_url(re.compile(rf".*{URL_PREFIX}/compare/runs/[^/]+$"))
    run_id = unquote(frame.url.rsplit("/", 1)[1])

    # The page posted to Airflow's REST API with the admin's own token: Airflow ran it as admin.
    run = airflow_server.run(run_id, COMPARE_DAG_ID)
    assert (run["triggered_by"], run["triggering_user_name"]) == ("rest_api", "admin")
    assert run["conf"]["models"] == [
        {"registry": EXPERIMENT, "version": live["version"]},
        {"experiment": EXPERIMENT, "run": run_slug, "job": other["job_id"]},
    ]
    assert run["conf"]["prompts"] == [PROMPT]

    # The page reloads itself until both answers are in, each with its tokens/s.
    wait_for_count(frame.locator("table.answers td", has_text="tokens/s"), 2, COMPARE_TIMEOUT_MS)
    assert airflow_server.wait_for(run_id, COMPARE_DAG_ID) == "success"
    headers = frame.locator("table.answers th").all_inner_texts()
    assert any(f"{EXPERIMENT} v{live['version']}" in h for h in headers)
    assert any(other["label"] in h for h in headers)
    assert PROMPT in _text(frame)
    screenshots.take(tab, "compare-result", frame)


def test_the_trigger_form_offers_every_shipped_experiment_and_a_training_section(
    tab, airflow_server, screenshots
):
    """Every example under include/configs/experiments/ (one per training method and type) is a choice of
    Start from, with its description; the Training section opens on the training type and method."""
    dialog = trigger_form(tab, airflow_server.base_url, DAG_ID)
    dialog.get_by_role("button", name="Experiment", exact=True).click()
    dialog.get_by_label("Start from", exact=True).click()
    options = tab.get_by_role("option")
    options.first.wait_for()
    # "name: its leading comment" per example, and the empty choice ("Nothing: fill in the fields below").
    listed = {text.split(":", 1)[0].strip() for text in options.all_inner_texts()} - {"Nothing"}
    shipped = set(templates())
    assert shipped >= {"kto", "orpo", "simpo", "cpo", "grpo", "llava-instruct", "freeze", "adalora"}
    assert listed == shipped, sorted(listed ^ shipped)
    with resized(tab, height=1300):
        screenshots.take(tab, "trigger-form-start-from-choices")
    # Choosing closes the list (Escape would close the whole dialog).
    options.filter(has_text=re.compile(r"^grpo: ")).click()
    # The choice shows in the field.
    dialog.get_by_text(re.compile(r"^grpo: ")).first.wait_for()
    dialog.get_by_role("button", name="Training", exact=True).click()
    dialog.get_by_text("Training type and method", exact=True).wait_for()
    # The field is a JSON object: its help lists each type with the methods it takes.
    dialog.get_by_text(re.compile(r"grpo: full, lora, qlora, freeze")).wait_for()
    dialog.get_by_text("Start from", exact=True).wait_for(state="hidden")  # the other section closed
    with resized(tab, height=1300):
        screenshots.element(dialog, "trigger-form-training-section")


def test_the_demo_starts_from_airflows_trigger_form_by_choosing(tab, airflow_server, screenshots):
    """Last in the module: the demo lasts some 12 minutes, so once its conf is validated the run is
    failed through REST, and the test ends only when nothing of it still runs."""
    demo = load_conf(demo_conf_path())
    dialog = trigger_form(tab, airflow_server.base_url, DAG_ID)
    dialog.get_by_role("button", name="Experiment", exact=True).click()
    choose(tab, dialog, "Start from", re.compile(rf"^{DEMO}: "))
    assert dialog.locator("input[name=element_name]").input_value() == demo["name"]
    with resized(tab, height=1300):
        screenshots.element(dialog, "trigger-form-start-from-demo")
    with tab.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns")
    ) as posted:
        dialog.get_by_role("button", name="Trigger", exact=True).click()
    assert posted.value.status == 200, posted.value.text()
    run_id = posted.value.json()["dag_run_id"]
    run_uri = layout.run(airflow_server.store_root, demo["name"], run_id)
    try:
        run = airflow_server.run(run_id)
        assert (run["triggered_by"], run["triggering_user_name"]) == ("ui", "admin")
        # Nothing typed: the choice and the prefilled name; every other field empty.
        conf = run["conf"]
        assert {k: v for k, v in conf.items() if v is not None} == {TEMPLATE: DEMO, "name": demo["name"]}
        expected = parse_experiment(demo)
        assert parse_experiment(conf) == expected
        # validate_conf resolved it in the run (on the worker) and recorded the demo experiment.
        state = airflow_server.wait_for_task(run_id, "validate_conf")
        assert state == "success", airflow_server.logs(run_id)
        assert load_experiment(run_uri) == expected.model_dump(mode="json")
    finally:
        airflow_server.fail_run(run_id, working_on=run_uri)
    assert airflow_server.run(run_id)["state"] == "failed"
