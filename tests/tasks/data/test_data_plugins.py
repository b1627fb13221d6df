"""Data plugins: the registry, discovery, clashes, and their use by formats and conf validation."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.config.dataset import DatasetConfig, DataSource
from tasks.data import formats, plugin_discovery
from tasks.data import plugins as data_plugins
from tasks.data.format_detection import detect_format
from tasks.data.formats import FORMATS as BUILTIN_FORMATS
from tasks.data.formats import check_columns, convert
from tasks.data.plugins import (
    DataPluginError,
    FilterPlugin,
    FormatPlugin,
    apply_filters,
    data_format,
    filter_names,
    format_names,
    get_filter,
    get_format,
    kind_of,
    load_plugins,
    register_filter,
    register_format,
    row_filter,
)
from tasks.data.rows import RowError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts with only the repository's plugins (plugins/data) to discover."""
    monkeypatch.delenv(data_plugins.ENV_VAR, raising=False)
    data_plugins._reset_for_tests()
    yield
    data_plugins._reset_for_tests()


def u(content):
    return {"role": "user", "content": content}


def a(content):
    return {"role": "assistant", "content": content}


def qa_convert(record):
    return {"messages": [u(record["question"]), a(record["answer"])]}


def qa_plugin(**changes) -> FormatPlugin:
    fields = {
        "name": "qa",
        "kind": "chat",
        "keys": ("question", "answer"),
        "convert": qa_convert,
        "detect": lambda r: "question" in r and "answer" in r,
    }
    return FormatPlugin(**{**fields, **changes})


def write_plugin(directory: Path, filename: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    header = "from tasks.data.plugins import data_format, row_filter\n"
    path.write_text(header + textwrap.dedent(body))
    return path


QA_MODULE = """
@data_format(name="qa", kind="chat", keys=("question", "answer"), detect=lambda r: "question" in r)
def convert_qa(record):
    '''Question and answer columns.'''
    return {"messages": [{"role": "user", "content": record["question"]},
                         {"role": "assistant", "content": record["answer"]}]}

@row_filter(name="drop_short")
def drop_short(row):
    return "too_short" if len(row["messages"][-1]["content"]) < 3 else None
"""


# ----------------------------------------------------------------------------------------------- registry


def test_registry_round_trip():
    plugin = register_format(qa_plugin(description="Q and A"))
    check = register_filter(FilterPlugin("no_x", lambda row: "has_x" if "x" in row["text"] else None))
    assert get_format("qa") is plugin and get_filter("no_x") is check
    assert format_names() == (*BUILTIN_FORMATS, "dolly", "qa")
    assert filter_names() == ("drop_refusals", "no_x")
    assert kind_of("qa") == "chat"
    assert apply_filters({"text": "abc"}, ["no_x"]) is None
    assert apply_filters({"text": "xyz"}, ["no_x"]) == "has_x"


def test_decorators_register_and_return_the_function():
    @data_format(name="lines", kind="text", keys=["body"])
    def convert_lines(record):
        """Raw text from `body`."""
        return {"text": record["body"]}

    @row_filter(name="no_empty")
    def no_empty(row):
        return None

    assert convert_lines({"body": "b"}) == {"text": "b"}
    plugin = get_format("lines")
    assert plugin.keys == ("body",) and plugin.description == "Raw text from `body`."
    assert plugin.convert is convert_lines and get_filter("no_empty").check is no_empty
    assert kind_of("lines") == "text"


def test_kind_of_builtins_and_unknown_names():
    assert [kind_of(f) for f in ("text", "preference", "alpaca", "sharegpt", "guanaco")] == [
        "text",
        "preference",
        "chat",
        "chat",
        "chat",
    ]
    with pytest.raises(ValueError, match=r"unknown format 'nope'.*plugin formats: dolly"):
        kind_of("nope")
    with pytest.raises(ValueError, match=r"unknown filter 'nope'.*plugin filters: drop_refusals"):
        get_filter("nope")


def test_builtin_names_agree_with_the_conf():
    assert formats.FORMATS == BUILTIN_FORMATS == tuple(formats.CONVERTERS)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"name": "Bad Name"}, "must be lowercase"),
        ({"name": "auto"}, "must be lowercase"),
        ({"kind": "audio"}, "kind 'audio'"),
        ({"keys": ("",)}, "keys must be non-empty strings"),
        ({"convert": None}, "convert is not callable"),
        ({"detect": "yes"}, "detect is not callable"),
    ],
)
def test_malformed_plugins_are_refused(changes, message):
    with pytest.raises(DataPluginError, match=message):
        qa_plugin(**changes)


def test_name_clashes_name_both_sides():
    with pytest.raises(
        DataPluginError, match=r"'alpaca' from .*test_data_plugins\.py clashes with the built-in"
    ):
        register_format(qa_plugin(name="alpaca"))
    register_format(qa_plugin())
    assert register_format(qa_plugin(description="again")).description == ""  # same module: a no-op
    register_filter(FilterPlugin("keep", lambda row: None))
    with pytest.raises(DataPluginError, match="clashes with the built-in"):
        register_format(qa_plugin(name="text"))


def test_a_second_file_claiming_a_name_is_an_error_naming_both_files(tmp_path, monkeypatch):
    first = write_plugin(tmp_path / "one", "qa_one.py", QA_MODULE)
    second = write_plugin(tmp_path / "two", "qa_two.py", QA_MODULE.replace("drop_short", "drop_tiny"))
    monkeypatch.setenv(data_plugins.ENV_VAR, f"{first.parent}:{second.parent}")
    with pytest.raises(DataPluginError) as error:
        load_plugins()
    assert str(second) in str(error.value) and str(first) in str(error.value)
    assert "format plugin 'qa'" in str(error.value)


def test_a_plugin_may_not_take_a_builtin_format_name(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "texty.py", QA_MODULE.replace('name="qa"', 'name="text"'))
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    with pytest.raises(DataPluginError, match=rf"{re.escape(str(path))}.*clashes with the built-in format"):
        format_names()


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_from_the_environment_directory(tmp_path, monkeypatch):
    write_plugin(tmp_path, "qa_plugin.py", QA_MODULE)
    write_plugin(tmp_path, "_helper.py", "raise RuntimeError('private files are not plugins')")
    (tmp_path / "notes.txt").write_text("not python")
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    assert "qa" in format_names() and filter_names() == ("drop_refusals", "drop_short")
    assert convert({"question": "Why?", "answer": "So"}, "qa") == {"messages": [u("Why?"), a("So")]}
    assert apply_filters({"messages": [u("q"), a("no")]}, ["drop_short"]) == "too_short"
    # Imported under a private name: the bare file name stays free for other modules.
    assert "qa_plugin" not in sys.modules
    assert any(name.startswith("_tunerflow_data_plugin_qa_plugin_") for name in sys.modules)


def test_load_plugins_is_idempotent_and_sees_a_later_directory(tmp_path, monkeypatch):
    load_plugins()
    assert format_names() == (*BUILTIN_FORMATS, "dolly")
    before = data_plugins.generation()
    load_plugins()
    assert data_plugins.generation() == before
    write_plugin(tmp_path, "qa_plugin.py", QA_MODULE)
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    assert "qa" in format_names()
    generation = data_plugins.generation()
    load_plugins()
    assert data_plugins.generation() == generation


def test_several_directories_in_the_variable(tmp_path, monkeypatch):
    write_plugin(tmp_path / "a", "qa_plugin.py", QA_MODULE)
    write_plugin(tmp_path / "b", "lines_plugin.py", '@data_format(name="lines", kind="text", keys=["body"])\n'
                 "def convert(record):\n    return {'text': record['body']}\n")  # fmt: skip
    monkeypatch.setenv(data_plugins.ENV_VAR, f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert format_names()[-3:] == ("dolly", "lines", "qa")


def test_a_missing_directory_in_the_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(DataPluginError, match=r"TUNERFLOW_DATA_PLUGINS names .*missing, which is not a dir"):
        load_plugins()


def test_a_plugin_that_fails_to_import_names_the_file_and_the_cause(tmp_path, monkeypatch):
    path = write_plugin(
        tmp_path,
        "broken.py",
        QA_MODULE + "\nimport tunerflow_no_such_module\n",
    )
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    for _ in range(2):  # reported on every call, never silently skipped the second time
        with pytest.raises(DataPluginError) as error:
            format_names()
        assert str(path) in str(error.value)
        assert "ModuleNotFoundError" in str(error.value) and "tunerflow_no_such_module" in str(error.value)
    # What it registered before failing is rolled back.
    monkeypatch.delenv(data_plugins.ENV_VAR)
    assert "qa" not in format_names() and "drop_short" not in filter_names()
    assert not any(name.startswith("_tunerflow_data_plugin_broken") for name in sys.modules)


def test_a_syntax_error_is_reported_with_the_file(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "typo.py", "def oops(:\n")
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    with pytest.raises(DataPluginError, match=rf"{re.escape(str(path))} failed to import: SyntaxError"):
        load_plugins()


def test_importing_a_plugin_file_twice_like_airflow_does_is_harmless(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "qa_plugin.py", QA_MODULE)
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    # Airflow's plugin manager: SourceFileLoader under the bare file name, before or after us.
    for _ in range(2):
        loader = importlib.machinery.SourceFileLoader("qa_plugin", str(path))
        spec = importlib.util.spec_from_loader("qa_plugin", loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        load_plugins()
    assert format_names().count("qa") == 1
    assert get_format("qa").convert({"question": "q", "answer": "a"}) == {"messages": [u("q"), a("a")]}


def test_the_repository_plugin_imports_twice_without_clashing():
    path = REPO / "plugins" / "data" / "dolly.py"
    loader = importlib.machinery.SourceFileLoader("dolly", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("dolly", loader))
    loader.exec_module(module)
    assert format_names() == (*BUILTIN_FORMATS, "dolly") and filter_names() == ("drop_refusals",)


class FakeEntryPoint:
    def __init__(self, name, value, loaded):
        self.name, self.value, self._loaded = name, value, loaded

    def load(self):
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


def test_entry_points_register_plugin_objects(monkeypatch):
    points = [
        FakeEntryPoint("qa", "mypkg.formats:QA", qa_plugin()),
        FakeEntryPoint("more", "mypkg.filters:ALL", [FilterPlugin("never", lambda row: None)]),
    ]
    monkeypatch.setattr(
        plugin_discovery, "entry_points", lambda group: points if group == "tunerflow.data_plugins" else []
    )
    assert "qa" in format_names() and "never" in filter_names()


def test_an_entry_point_that_fails_names_itself(monkeypatch):
    points = [FakeEntryPoint("bad", "mypkg.bad", ImportError("no module named mypkg"))]
    monkeypatch.setattr(plugin_discovery, "entry_points", lambda group: points)
    with pytest.raises(DataPluginError, match=r"entry point 'bad = mypkg.bad' failed to load: ImportError"):
        load_plugins()


def test_the_modules_stay_light_at_import():
    code = (
        "import sys, tasks.data.plugins as d, tasks.data.formats; d.load_plugins(); "
        "heavy = [m for m in ('pydantic', 'yaml', 'torch', 'airflow') if m in sys.modules]; "
        "assert not heavy, heavy; assert 'dolly' in d.format_names()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ----------------------------------------------------------------------------------------------- filters


def test_filters_apply_in_order_and_the_first_reason_wins():
    register_filter(FilterPlugin("long", lambda row: "too_long" if len(row["text"]) > 3 else None))
    register_filter(FilterPlugin("vowel", lambda row: "vowel" if row["text"][0] in "aeiou" else None))
    assert apply_filters({"text": "apple"}, ["long", "vowel"]) == "too_long"
    assert apply_filters({"text": "apple"}, ["vowel", "long"]) == "vowel"
    assert apply_filters({"text": "pie"}, ["long", "vowel"]) is None
    assert apply_filters({"text": "apple"}, []) is None


@pytest.mark.parametrize("result", [True, False, "Not Snake", 3])
def test_a_filter_must_return_none_or_a_reason_code(result):
    register_filter(FilterPlugin("sloppy", lambda row: result))
    with pytest.raises(DataPluginError, match="data filter 'sloppy' returned"):
        apply_filters({"text": "t"}, ["sloppy"])


def test_an_exception_in_a_filter_propagates_naming_the_filter():
    register_filter(FilterPlugin("buggy", lambda row: row["messages"]))
    with pytest.raises(KeyError) as error:
        apply_filters({"text": "t"}, ["buggy"])
    assert any("data filter 'buggy'" in note for note in error.value.__notes__)


# ------------------------------------------------------------------------------------------ format dispatch


def test_convert_dispatches_to_the_plugin_with_columns():
    register_format(qa_plugin())
    record = {"q": "2+2?", "answer": "4"}
    assert convert(record, "qa", {"question": "q"}) == {"messages": [u("2+2?"), a("4")]}
    assert convert({**record, "extra": 1}, "qa", {"question": "q"}) == {"messages": [u("2+2?"), a("4")]}


def test_a_plugin_rowerror_passes_through_with_the_mapped_column():
    def strict(record):
        if "question" not in record:
            raise RowError("missing_field", "question")
        return qa_convert(record)

    register_format(qa_plugin(convert=strict))
    with pytest.raises(RowError, match="mapped from column 'q'") as error:
        convert({"answer": "4"}, "qa", {"question": "q"})
    assert error.value.code == "missing_field"


def test_a_crashing_plugin_drops_the_row_as_plugin_error():
    register_format(qa_plugin())
    with pytest.raises(RowError, match=r"format plugin 'qa' raised KeyError") as error:
        convert({"question": "q"}, "qa")
    assert error.value.code == "plugin_error"


@pytest.mark.parametrize(
    "kind, output, detail",
    [
        ("chat", None, "returned NoneType"),
        ("chat", {"text": "t"}, r"returned \['text'\]; a chat row has exactly \['messages'\]"),
        ("chat", {"messages": [u("q"), a("a")], "id": "x"}, r"returned \['id', 'messages'\]"),
        ("chat", {"messages": []}, "empty_field"),
        ("chat", {"messages": [u("q")]}, "bad_role_order"),
        ("chat", {"messages": [a("a"), u("q")]}, "bad_role_order"),
        ("chat", {"messages": [{"role": "bot", "content": "x"}]}, "bad_role"),
        ("chat", {"messages": [u(""), a("a")]}, "empty_field"),
        ("chat", {"messages": [u(3), a("a")]}, "bad_type"),
        ("text", {"text": "   "}, "empty_field"),
        ("text", {"text": ["a"]}, "bad_type"),
        ("preference", {"prompt": [u("q")], "chosen": "a", "rejected": [a("b")]}, "bad_type"),
        ("preference", {"prompt": [u("q")], "chosen": [u("a")], "rejected": [a("b")]}, "bad_role_order"),
        ("preference", {"prompt": [], "chosen": [a("a")], "rejected": [a("b")]}, "empty_field"),
    ],
)
def test_a_plugin_output_of_the_wrong_shape_is_bad_plugin_output(kind, output, detail):
    register_format(qa_plugin(kind=kind, convert=lambda record: output))
    with pytest.raises(RowError, match=detail) as error:
        convert({"question": "q"}, "qa")
    assert error.value.code == "bad_plugin_output" and "format plugin 'qa'" in error.value.detail


def test_plugin_outputs_of_each_kind_are_normalised_like_builtin_rows():
    chat = {"messages": [{"role": "user", "content": "q", "name": "me"}, a("a")]}
    register_format(qa_plugin(name="c", convert=lambda record: chat))
    assert convert({}, "c") == {"messages": [u("q"), a("a")]}
    register_format(qa_plugin(name="t", kind="text", convert=lambda record: {"text": "body"}))
    assert convert({}, "t") == {"text": "body"}
    pair = {"prompt": [u("q")], "chosen": [a("yes")], "rejected": [a("no")]}
    register_format(qa_plugin(name="p", kind="preference", convert=lambda record: pair))
    assert convert({}, "p") == pair
    assert kind_of("p") == "preference"


def test_convert_refuses_unknown_formats_and_non_object_rows():
    with pytest.raises(
        ValueError, match=r"unknown format 'nope'; built-in formats: alpaca.*plugin formats: dolly"
    ):
        convert({}, "nope")
    with pytest.raises(RowError, match="bad_type"):
        convert(["a"], "dolly")


def test_the_converter_cache_follows_the_registry():
    register_format(qa_plugin())
    assert convert({"question": "q", "answer": "a"}, "qa") == {"messages": [u("q"), a("a")]}
    data_plugins._reset_for_tests()
    register_format(qa_plugin(convert=lambda record: {"messages": [u("new"), a("row")]}))
    assert convert({"question": "q", "answer": "a"}, "qa") == {"messages": [u("new"), a("row")]}
    data_plugins._reset_for_tests()
    with pytest.raises(ValueError, match="unknown format 'qa'"):
        convert({"question": "q", "answer": "a"}, "qa")


# --------------------------------------------------------------------------------------------- detection


def test_detect_format_picks_a_plugin_format():
    register_format(qa_plugin())
    assert detect_format({"question": "q", "answer": "a"}) == "qa"
    assert detect_format({"q": "q", "answer": "a"}, {"question": "q"}) == "qa"


def test_a_plugin_detector_wins_over_the_builtin_key_checks_but_builtins_still_detect():
    # A Dolly row has alpaca's `instruction`; the narrower plugin detector decides.
    assert detect_format({"instruction": "i", "context": "", "response": "r"}) == "dolly"
    assert detect_format({"instruction": "i", "output": "o"}) == "alpaca"
    assert detect_format({"messages": []}) == "messages"
    assert detect_format({"text": "### Human: hi ### Assistant: yo"}) == "guanaco"
    assert detect_format({"text": "plain"}) == "text"


def test_plugins_come_before_the_catch_all_text_formats():
    register_format(qa_plugin(name="story", kind="text", detect=lambda r: "text" in r and "title" in r))
    assert detect_format({"text": "t", "title": "T"}) == "story"
    assert detect_format({"text": "t"}) == "text"


def test_two_plugins_matching_is_ambiguous():
    register_format(qa_plugin())
    register_format(qa_plugin(name="qa2"))
    with pytest.raises(ValueError, match=r"several formats \(qa, qa2\).*set `format`"):
        detect_format({"question": "q", "answer": "a"})


def test_a_plugin_without_a_detector_is_never_detected():
    register_format(qa_plugin(detect=None))
    with pytest.raises(ValueError, match=r"cannot detect.*set `format` to one of .*dolly, qa"):
        detect_format({"question": "q", "answer": "a"})


def test_a_failing_detector_names_the_plugin():
    register_format(qa_plugin(detect=lambda r: r["question"].startswith("Q")))
    with pytest.raises(ValueError, match=r"detector of format plugin 'qa' failed.*KeyError"):
        detect_format({"text": "t"})


# ------------------------------------------------------------------------------------------------ columns


def test_check_columns_accepts_plugin_keys():
    check_columns({"response": "answer", "context": "passage"})  # dolly's keys
    register_format(qa_plugin())
    check_columns({"question": "prompt"})
    with pytest.raises(ValueError, match=r"unknown keys \['questoin'\].*question.*response"):
        check_columns({"questoin": "prompt"})


def test_builtin_columns_do_not_load_plugins(tmp_path, monkeypatch):
    write_plugin(tmp_path, "broken.py", "raise RuntimeError('boom')")
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    check_columns({"instruction": "q", "output": "a"})
    assert convert({"instruction": "q", "output": "a"}, "alpaca") == {"messages": [u("q"), a("a")]}
    with pytest.raises(DataPluginError, match=r"broken\.py failed to import: RuntimeError: boom"):
        check_columns({"question": "q"})


# ------------------------------------------------------------------------------------------- conf checks


def test_the_conf_accepts_plugin_formats_and_filters():
    dataset = DatasetConfig(name="d", uri="x", format="dolly", filters=["drop_refusals"])
    assert dataset.format == "dolly" and dataset.filters == ["drop_refusals"]
    assert DatasetConfig(name="d", uri="x", columns={"response": "answer"}).columns
    assert DataSource(uri="x", format="dolly").format == "dolly"


def test_the_conf_lists_the_known_formats_and_filters():
    with pytest.raises(ValueError, match=r"unknown format 'dolli'; use auto or one of: alpaca, .*, dolly"):
        DatasetConfig(name="d", uri="x", format="dolli")
    with pytest.raises(ValueError, match=r"unknown filters \['drop_refusal'\]; .* provide: drop_refusals"):
        DatasetConfig(name="d", uri="x", filters=["drop_refusal"])
    with pytest.raises(ValueError, match="unknown format 'dolli'"):
        DataSource(uri="x", format="dolli")


def test_the_conf_sees_plugins_from_the_environment(tmp_path, monkeypatch):
    write_plugin(tmp_path, "qa_plugin.py", QA_MODULE)
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    dataset = DatasetConfig(name="d", uri="x", format="qa", filters=["drop_short", "drop_refusals"])
    assert dataset.filters == ["drop_short", "drop_refusals"]


def test_a_broken_plugin_is_a_conf_error_naming_the_file(tmp_path, monkeypatch):
    write_plugin(tmp_path, "broken.py", "raise RuntimeError('boom')")
    monkeypatch.setenv(data_plugins.ENV_VAR, str(tmp_path))
    assert DatasetConfig(name="d", uri="x", format="alpaca").format == "alpaca"  # built-ins need no plugins
    with pytest.raises(ValueError, match=r"broken\.py failed to import: RuntimeError: boom"):
        DatasetConfig(name="d", uri="x", format="dolly")
