"""The Models pages through the app: what they show, who sees the actions, the two-step promote and
roll back (CSRF, edit rights, a concurrent move losing cleanly) and escaping of names and hparams."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tasks.registry import versions as registry
from tests.fixtures import registry_store as fx
from tests.plugins.tunerflow_ui.conftest import viewer

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture
def root(tmp_path) -> str:
    root = (tmp_path / "store").as_uri()
    fx.build_registry(root)
    return root


def _csrf(name: str = "ada") -> str:
    return viewer(name=name).csrf


def test_the_list_shows_each_registry_and_its_production_version(ui_client, root):
    text = ui_client(root).get("/models").text
    assert 'href="/tunerflow/models/tuna"' in text
    assert "Production: <strong>version 2</strong>" in text
    assert "tuna|tiny|lr3" in text and "rouge_l = 0.8" in text


def test_the_registry_page_shows_lineage_checks_decision_and_history(ui_client, root):
    response = ui_client(root).get("/models/tuna")
    assert response.status_code == 200
    text = response.text
    run = "/tunerflow/experiments/demo-exp/runs/manual__2026-01-02T03-04-05-00-00"
    assert f'href="{run}"' in text and f'href="{run}/jobs/tuna--tiny--lr3"' in text
    assert f'href="/tunerflow/datasets/tuna/versions/{fx.VERSION}"' in text
    assert "org/tiny" in text and "learning_rate" in text and "lora_r" in text
    assert "rouge_l dropped 0.09 &gt; 0.05" in text
    assert "does not beat the champion" in text
    assert "no champion yet: the candidate becomes production" in text and "pipeline" in text


def test_an_editor_sees_the_actions_and_a_reader_does_not(ui_client, root):
    editor_page = ui_client(root).get("/models/tuna").text
    assert 'href="/tunerflow/models/tuna/versions/3/promote"' in editor_page
    assert 'href="/tunerflow/models/tuna/versions/2/promote"' not in editor_page  # already production
    assert 'href="/tunerflow/models/tuna/rollback"' in editor_page
    reader_page = ui_client(root, can_edit=False).get("/models/tuna").text
    assert "/promote" not in reader_page and "/rollback" not in reader_page and "(read only)" in reader_page


def test_a_reader_gets_403_on_every_action_url(ui_client, root):
    client = ui_client(root, can_edit=False)
    form = {"csrf": _csrf(), "expected": "2"}
    assert client.get("/models/tuna/versions/3/promote").status_code == 403
    assert client.post("/models/tuna/versions/3/promote", data=form).status_code == 403
    assert client.get("/models/tuna/rollback").status_code == 403
    assert client.post("/models/tuna/rollback", data=form).status_code == 403
    assert registry.pointer(root, "tuna")["version"] == 2


def test_the_confirmation_page_says_exactly_what_will_change(ui_client, root):
    text = ui_client(root).get("/models/tuna/versions/3/promote").text
    assert "<strong>version 2</strong>\n&rarr; <strong>version 3</strong>" in text
    assert f'name="csrf" value="{_csrf()}"' in text and 'name="expected" value="2"' in text
    assert '<form method="post">' in text and "Promote version 3" in text
    rollback = ui_client(root).get("/models/tuna/rollback").text
    assert "<strong>version 2</strong>\n&rarr; <strong>version 1</strong>" in rollback


@pytest.mark.parametrize("csrf", [None, "", "stale-value-from-an-old-session"])
def test_a_missing_or_stale_csrf_value_is_403_and_changes_nothing(ui_client, root, csrf):
    form = {"expected": "2"} | ({"csrf": csrf} if csrf is not None else {})
    client = ui_client(root)
    assert client.post("/models/tuna/versions/3/promote", data=form).status_code == 403
    assert client.post("/models/tuna/rollback", data=form).status_code == 403
    assert registry.pointer(root, "tuna")["version"] == 2


def test_promote_changes_production_records_the_user_and_says_so(ui_client, root):
    client = ui_client(root)
    form = {"csrf": _csrf(), "expected": "2"}
    response = client.post("/models/tuna/versions/3/promote", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/tunerflow/models/tuna?changed=3"
    assert registry.pointer(root, "tuna")["version"] == 3
    assert registry.history(root, "tuna")[-1]["actor"] == "ada"
    text = client.get(response.headers["location"]).text
    assert "ada promoted:\nproduction is now version 3 (was version 2)." in text
    assert "<td>ada</td>" in text and "promoted by ada in the tunerflow UI" in text


def test_a_promotion_that_loses_to_a_concurrent_move_says_so(ui_client, root):
    client = ui_client(root)
    assert 'name="expected" value="2"' in client.get("/models/tuna/versions/3/promote").text
    assert registry.set_production(root, "tuna", 1, expected=2, actor="grace")  # someone else, first
    response = client.post("/models/tuna/versions/3/promote", data={"csrf": _csrf(), "expected": "2"})
    assert response.status_code == 409
    assert "changed since this page was shown: it is now version 1 (moved by grace)" in response.text
    assert 'name="expected" value="3"' in response.text  # the page now offers the current state
    assert registry.pointer(root, "tuna")["version"] == 1


def test_rollback_moves_back_then_explains_there_is_nothing_earlier(ui_client, root):
    client = ui_client(root)
    response = client.post("/models/tuna/rollback", data={"csrf": _csrf(), "expected": "2"})
    assert response.status_code == 200 and "ada rolled back:\nproduction is now version 1" in response.text
    assert registry.pointer(root, "tuna")["version"] == 1
    confirm = client.get("/models/tuna/rollback")
    assert confirm.status_code == 200 and "no earlier production version" in confirm.text
    assert "<form" not in confirm.text
    refused = client.post("/models/tuna/rollback", data={"csrf": _csrf(), "expected": "3"})
    assert refused.status_code == 409 and "no earlier production version to roll back to" in refused.text


def test_unknown_registries_and_versions_are_404(ui_client, root):
    client = ui_client(root)
    assert client.get("/models/nope").status_code == 404
    assert client.get("/models/tuna/versions/9/promote").status_code == 404
    assert client.post("/models/nope/rollback", data={"csrf": _csrf()}).status_code == 404


def test_a_registry_name_and_hparams_holding_html_render_as_text(ui_client, root):
    fx.build_registry(root, name=EVIL, hparams={"note": fx.SCRIPT})
    client = ui_client(root)
    index = client.get("/models").text
    assert EVIL not in index and "&lt;img src=x onerror=alert(1)&gt;" in index
    assert f'href="/tunerflow/models/{quote(EVIL, safe="/")}"' in index
    page = client.get(f"/models/{quote(EVIL, safe='')}")
    assert page.status_code == 200
    assert fx.SCRIPT not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert EVIL not in page.text
