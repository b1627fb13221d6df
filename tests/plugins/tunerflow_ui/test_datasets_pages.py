"""The Datasets pages through the app: lists, a dataset, a version (card as escaped text, chart data,
drop reasons, rejected rows by id only), the token-length picture, and one row opened on request with
its text escaped."""

from __future__ import annotations

import pytest

from tasks.storage import store
from tests.fixtures import registry_store as fx

VERSION_URL = f"/datasets/{fx.DATASET}/versions/{fx.VERSION}"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    root = (tmp_path_factory.mktemp("datasets-pages") / "store").as_uri()
    fx.build_datasets(root)
    return root


def test_the_list_has_registered_and_prepared_only_datasets(ui_client, root):
    text = ui_client(root).get("/datasets").text
    assert 'href="/tunerflow/datasets/tuna"' in text and 'href="/tunerflow/datasets/scratch"' in text
    assert f'href="/tunerflow{VERSION_URL}"' in text
    order = [text.index(word) for word in ("Registered", "tuna", "not registered", "scratch")]
    assert order == sorted(order)


def test_a_dataset_page_shows_definition_revisions_and_versions(ui_client, root):
    text = ui_client(root).get("/datasets/tuna").text
    assert "<dt>max_tokens</dt><dd>64</dd>" in text and "cap the length" in text
    assert "<td>max_tokens</td>" in text and f'href="/tunerflow{VERSION_URL}"' in text


def test_the_version_page_lists_rejected_rows_by_id_and_reason_only(ui_client, root):
    response = ui_client(root).get(VERSION_URL)
    assert response.status_code == 200
    text = response.text
    assert '<td>train</td><td class="num">8</td>' in text
    url = f"/tunerflow{VERSION_URL}"
    assert f'href="{url}/rows/chats.jsonl%3A11">chats.jsonl:11</a></td><td>duplicate</td>' in text
    assert f'href="{url}?reason=duplicate#rejected">duplicate</a></td><td class="num">2</td>' in text
    assert fx.SECRET not in text and "same as chats.jsonl:1" not in text and "80 tokens" not in text


def test_the_version_page_draws_token_lengths_and_escapes_the_card(ui_client, root):
    client = ui_client(root)
    text = client.get(VERSION_URL).text
    assert '<script type="application/json" id="token-lengths-data">{"kind": "bar"' in text
    assert '"labels": ["27\\u201331", "32\\u201338"]' in text and '"values": [1, 9]' in text
    assert "<img" not in text, "drawn from the bins, so the picture is not shown"
    # The card quotes the source URI, which holds HTML: shown as text inside <pre>.
    assert '<pre class="card">---' in text and ESCAPED_SCRIPT in text and fx.SCRIPT not in text
    picture = client.get(f"{VERSION_URL}/token_lengths.png")
    assert picture.headers["content-type"] == "image/png" and picture.content.startswith(b"\x89PNG")


def test_a_version_prepared_before_bins_were_kept_shows_the_picture(ui_client, tmp_path):
    root = (tmp_path / "store").as_uri()
    prefix = fx.prepare_version(root, "old", "v1", {"train": [fx._row("o.jsonl:1", "kept")]}, [])
    report = store.read_json(store.join(prefix, "validation_report.json"))
    for summary in report["token_lengths"].values():
        del summary["bins"]
    store.write_json(store.join(prefix, "validation_report.json"), report)
    text = ui_client(root).get("/datasets/old/versions/v1").text
    assert '<img src="/tunerflow/datasets/old/versions/v1/token_lengths.png"' in text
    assert "token-lengths-data" not in text


def test_a_kept_row_holding_a_script_opens_as_text(ui_client, root):
    response = ui_client(root).get(f"{VERSION_URL}/rows/chats.jsonl:9")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert "Kept in the <strong>validation</strong> split" in response.text
    assert ESCAPED_SCRIPT in response.text and fx.SCRIPT not in response.text


def test_a_rejected_row_opens_with_its_reason_and_its_source_text_escaped(ui_client, root):
    response = ui_client(root).get(f"{VERSION_URL}/rows/chats.jsonl%3A14")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    text = response.text
    assert "<dd>bad_role</dd>" in text and f"role &#39;{ESCAPED_SCRIPT}&#39;" in text
    assert "Read from the source, unchanged since this version was prepared." in text
    assert f"&#34;role&#34;: &#34;{ESCAPED_SCRIPT}&#34;" in text and fx.SCRIPT not in text


def test_a_rejected_row_whose_source_is_gone_says_so(ui_client, root):
    text = ui_client(root).get(f"{VERSION_URL}/rows/chats.jsonl:13").text
    assert '<div class="box bad source-unreadable">' in text and "The source cannot be read now" in text
    assert "<pre>" not in text and fx.SCRIPT not in text


def test_filtering_and_paging_keep_their_place(ui_client, root):
    text = ui_client(root).get(f"{VERSION_URL}?reason=too_long").text
    assert "chats.jsonl:13" in text and "chats.jsonl:11" not in text and "show all" in text
    assert ui_client(root).get(f"{VERSION_URL}?page=0").status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/datasets/nope",
        "/datasets/nope/versions/v1",
        f"/datasets/tuna/versions/{fx.UNREGISTERED_VERSION}",
        f"{VERSION_URL}/rows/chats.jsonl:99",
        f"/datasets/scratch/versions/{fx.UNREGISTERED_VERSION}/token_lengths.png/x",
    ],
)
def test_what_the_store_does_not_list_is_404(ui_client, root, path):
    assert ui_client(root).get(path).status_code == 404


def test_a_reader_without_edit_rights_sees_every_dataset_page(ui_client, root):
    client = ui_client(root, can_edit=False, can_compare=False)
    for path in ("/datasets", "/datasets/tuna", VERSION_URL, f"{VERSION_URL}/rows/chats.jsonl:9"):
        assert client.get(path).status_code == 200
