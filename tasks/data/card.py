"""The dataset card: a Hugging Face style README.md (plus token_lengths.png) beside the prepared splits.

`write_card(directory, stats)` writes into the dataset version directory that holds train.jsonl,
validation.jsonl and test.jsonl. The YAML front matter lists the non-empty splits under `configs`, so
`datasets.load_dataset(<directory>)` loads exactly those splits under their names and ignores the
other files there (rejected.jsonl, validation_report.json).

The card is built from counts only: no row text is passed in, so none can leak into it.

`stats` (JSON-ready; every key but name and version may be missing):
    name: str                      dataset name
    version: str                   content version (directory name)
    format: str                    source row format (alpaca, sharegpt, messages, text, a plugin's, ...)
    kind: "chat" | "text" | "preference" | "unpaired" | "vision"
    created_at: str                ISO 8601 time of preparation
    sources: [{"uri": str, "fingerprint": str, "rows_in": int, "weight": float}, ...]
    counts: {"train": int, "validation": int, "test": int}    rows written per split
    rows_in: int                   rows read from all sources
    rows_dropped: int              rows dropped by validation, filters, dedup, token limits, PII
    drop_reasons: {code: int}      not_utf8, unparseable, ..., `filter:<name>` or any plugin code
    pii: {kind: int}               PII matches per kind (email, phone, ip, api_key, ...)
    pii_mode: "off" | "redact" | "drop"
    settings: {"split": str | None, "seed": int, "min_tokens": int, "max_tokens": int | None,
               "dedup": bool | "near", "decontaminate_ngram": int, "filters": [str, ...]}
    checks: [tasks.data.checks.CheckRun as JSON, ...]   every check the definition turned on, run or not
    token_lengths: {tokenizer name: tasks.data.length_stats.LengthHistogram.to_dict()}   may be empty
    image_tokens: {tokenizer name: tokens per image, or "by image size"}   vision rows only; in the lengths

The picture is drawn by `tasks.data.card_plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.data.card_plot import plot_lengths
from tasks.data.length_stats import LengthHistogram

README = "README.md"
PNG = "token_lengths.png"
SPLITS = ("train", "validation", "test")
KIND_SCHEMA = {
    "chat": '{"id": str, "messages": [{"role": str, "content": str}, ...]}',
    "text": '{"id": str, "text": str}',
    "preference": '{"id": str, "prompt": [messages], "chosen": [messages], "rejected": [messages]}',
    "unpaired": '{"id": str, "prompt": [messages], "completion": [messages], "label": bool}',
    "vision": '{"id": str, "messages": [messages with <image> placeholders], "images": [uri, ...], '
    '"image_sizes": [[width, height], ...]}',
}
REASONS = {
    "not_utf8": "the row's bytes are not valid UTF-8",
    "unparseable": "the line or record could not be parsed (bad JSON, extra CSV cells)",
    "missing_field": "a field the format needs is absent",
    "empty_field": "a field the format needs is empty",
    "bad_type": "a field has the wrong type (e.g. a number or list where text is expected)",
    "bad_role": "a chat turn has a role other than system, user, assistant or tool",
    "bad_role_order": "chat turns are out of order (e.g. the last turn is not the assistant's)",
    "too_short": "fewer tokens than min_tokens under one of the tokenizers",
    "too_long": "more tokens than max_tokens under one of the tokenizers",
    "duplicate": "same content as an earlier row once case, width and spacing are folded",
    "near_duplicate": "its word shingles resemble an earlier row's (dedup: near, MinHash estimate)",
    "overlaps_eval": "a training prompt shares an n-gram run with a validation or test prompt",
    "pii": "holds personal data (emails, phone numbers, IPs, API keys) and pii mode is drop",
}
PII_MODES = {
    "off": "PII was not scanned for.",
    "redact": "Matches were replaced with placeholders such as `<EMAIL>`; the rows were kept.",
    "drop": "Rows holding a match were dropped (reason `pii` above).",
}
# Hugging Face's size_categories buckets, by their upper bound.
SIZE_BUCKETS = [
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
]


# -- small helpers ----------------------------------------------------------------------------------


def size_category(rows: int) -> str:
    return next((label for bound, label in SIZE_BUCKETS if rows < bound), "n>1T")


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"
    return str(value)


def _cell(value: Any) -> str:
    """One table cell: pipes and newlines would break the Markdown table."""
    text = _num(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(value: Any) -> str:
    text = str(value).replace("`", "'")
    return f"`{_cell(text)}`" if text else "–"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _setting(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_code(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{_cell(k)}={_cell(v)}" for k, v in value.items()) if value else "none"
    return _cell(value)


def _counts(stats: dict[str, Any]) -> dict[str, int]:
    counts = stats.get("counts") or {}
    return {split: int(counts.get(split) or 0) for split in SPLITS}


def _histograms(stats: dict[str, Any]) -> dict[str, LengthHistogram]:
    out = {name: LengthHistogram.from_dict(d) for name, d in (stats.get("token_lengths") or {}).items()}
    return {name: hist for name, hist in out.items() if hist.count}


# -- front matter -----------------------------------------------------------------------------------


def front_matter(stats: dict[str, Any]) -> dict[str, Any]:
    """The YAML metadata Hugging Face (and `datasets.load_dataset`) read from the card."""
    counts = _counts(stats)
    tags = [t for t in ("tunerflow", stats.get("kind"), stats.get("format")) if t]
    meta: dict[str, Any] = {
        "pretty_name": f"{stats['name']} {stats['version']}",
        "size_categories": [size_category(sum(counts.values()))],
        "task_categories": ["text-generation"],
        "tags": list(dict.fromkeys(str(t) for t in tags)),
    }
    data_files = [{"split": s, "path": f"{s}.jsonl"} for s in SPLITS if counts[s]]
    # With no rows at all there is nothing to load; listing empty files would make load_dataset fail.
    if data_files:
        meta["configs"] = [{"config_name": "default", "data_files": data_files}]
    return meta


# -- Markdown sections ------------------------------------------------------------------------------


def _header(stats: dict[str, Any]) -> list[str]:
    sources = stats.get("sources") or []
    kind = stats.get("kind")
    lines = [f"# {stats['name']} (version {stats['version']})", ""]
    facts = [
        f"Prepared by tunerflow on {stats['created_at']}"
        if stats.get("created_at")
        else "Prepared by tunerflow",
        f"from {len(sources)} source{'s' if len(sources) != 1 else ''}" if sources else None,
        f"format `{stats['format']}`" if stats.get("format") else None,
        f"{kind} rows" if kind else None,
    ]
    lines += [", ".join(f for f in facts if f) + ".", ""]
    lines += ["This card holds counts only; it quotes no row of the dataset.", ""]
    return lines


def _splits(stats: dict[str, Any]) -> list[str]:
    counts = _counts(stats)
    kept = sum(counts.values())
    rows = [[s, _num(counts[s]), f"`{s}.jsonl`" if counts[s] else "(empty, not loaded)"] for s in SPLITS]
    rows.append(["**total**", f"**{_num(kept)}**", ""])
    lines = ["## Splits", "", *_table(["Split", "Rows", "File"], rows)]
    rows_in, dropped = stats.get("rows_in"), stats.get("rows_dropped")
    if isinstance(rows_in, int):
        share = f" ({dropped / rows_in:.1%})" if isinstance(dropped, int) and rows_in else ""
        lines += [f"{_num(rows_in)} rows read, {_num(dropped)} dropped{share}, {_num(kept)} kept.", ""]
    return lines


def _sources(stats: dict[str, Any]) -> list[str]:
    sources = stats.get("sources") or []
    lines = ["## Sources", ""]
    if not sources:
        return [*lines, "No source was recorded.", ""]
    rows = [
        [
            str(i),
            _code(s.get("uri", "")),
            _num(s.get("rows_in")),
            _num(s.get("weight")),
            _code(s.get("fingerprint", "")),
        ]
        for i, s in enumerate(sources, 1)
    ]
    lines += _table(["#", "URI", "Rows in", "Weight", "Fingerprint"], rows)
    lines += [
        "The weight resamples a source's training rows (1 keeps each once, 0.5 a deterministic half, "
        "2 each twice); the fingerprint identifies the exact input bytes.",
        "",
    ]
    return lines


def reason_meaning(code: str) -> str:
    if code in REASONS:
        return REASONS[code]
    if code.startswith("filter:"):
        return f"rejected by the data-plugin filter `{_cell(code.removeprefix('filter:'))}`"
    return "reported by a data plugin"


def _dropped(stats: dict[str, Any]) -> list[str]:
    reasons = stats.get("drop_reasons") or {}
    lines = ["## Dropped rows", ""]
    if not reasons:
        return [*lines, "No row was dropped.", ""]
    ordered = sorted(reasons.items(), key=lambda item: (-int(item[1]), item[0]))
    rows = [[_code(code), _num(int(count)), reason_meaning(code)] for code, count in ordered]
    lines += _table(["Reason", "Rows", "Meaning"], rows)
    lines += ["`rejected.jsonl` beside this card lists the id and reason of every dropped row.", ""]
    return lines


def _pii(stats: dict[str, Any]) -> list[str]:
    mode = stats.get("pii_mode") or "off"
    found = stats.get("pii") or {}
    lines = ["## PII", "", f"Mode: `{_cell(mode)}`. {PII_MODES.get(mode, '')}".rstrip(), ""]
    if found:
        ordered = sorted(found.items(), key=lambda item: (-int(item[1]), item[0]))
        lines += _table(["Kind", "Matches"], [[_code(k), _num(int(n))] for k, n in ordered])
    elif mode != "off":
        lines += ["Nothing was found.", ""]
    return lines


def _checks(stats: dict[str, Any]) -> list[str]:
    checks = stats.get("checks") or []
    if not checks:
        return []
    rows = []
    for check in checks:
        applied = [f"{_cell(check[key])}" for key in ("mode", "setting") if check.get(key) is not None]
        if check.get("tokenizers"):
            applied.append("counted with " + ", ".join(_cell(name) for name in check["tokenizers"]))
        ran = "yes" if check["ran"] else f"**no**: {_cell(check.get('not_run_because') or '')}"
        dropped = "-" if check.get("dropped") is None else _num(int(check["dropped"]))
        rows.append([_code(check["name"]), "; ".join(applied) or "-", ran, dropped])
    return ["## Checks", "", *_table(["Check", "Applied as", "Ran", "Rows dropped"], rows)]


def _settings(stats: dict[str, Any]) -> list[str]:
    settings = stats.get("settings") or {}
    if not settings:
        return []
    rows = [[_code(key), _setting(value)] for key, value in settings.items()]
    return ["## Preparation settings", "", *_table(["Setting", "Value"], rows)]


def _lengths(
    histograms: dict[str, LengthHistogram],
    has_png: bool,
    sample: str = "all rows",
    image_tokens: dict[str, Any] | None = None,
) -> list[str]:
    lines = ["## Token lengths", ""]
    if not histograms:
        return [*lines, "Token lengths were not counted.", ""]
    head = ["Tokenizer", "Rows", "Mean", "Min", "p50", "p90", "p99", "Max"]
    rows = []
    for name, hist in histograms.items():
        s = hist.summary()
        rows.append(
            [_code(name), *(_num(s[k]) for k in ("count", "mean", "min", "p50", "p90", "p99", "max"))]
        )
    lines += _table(head, rows)
    lines += [
        f"Counted over the rows written to the splits ({sample}). Percentiles are read from a histogram: "
        "exact up to "
        "16 tokens, above that the top of a quarter-octave bin (at most about 19% high).",
        "",
    ]
    if image_tokens:
        each = ", ".join(f"{_code(name)}: {count}" for name, count in image_tokens.items())
        lines += [f"The lengths include the tokens each image becomes in the model (per image: {each}).", ""]
    if has_png:
        lines += [f"![token lengths]({PNG})", ""]
    return lines


def _loading(directory: Path, stats: dict[str, Any]) -> list[str]:
    counts = _counts(stats)
    splits = [s for s in SPLITS if counts[s]]
    schema = KIND_SCHEMA.get(str(stats.get("kind")))
    lines = ["## Loading", ""]
    if not splits:
        return [*lines, "Every split is empty: there is nothing to load.", ""]
    lines += [
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{directory}")  # the directory holding this card',
        f"# splits: {', '.join(splits)}",
        "```",
        "",
        "Each split is plain JSON Lines" + (f", one row per line: `{schema}`." if schema else "."),
        "",
    ]
    return lines


def render(directory: Path, stats: dict[str, Any], has_png: bool) -> str:
    meta = yaml.safe_dump(front_matter(stats), sort_keys=False, allow_unicode=True)
    sections = [
        _header(stats),
        _splits(stats),
        _sources(stats),
        _checks(stats),
        _dropped(stats),
        _pii(stats),
        _settings(stats),
        _lengths(
            _histograms(stats),
            has_png,
            stats.get("token_lengths_sample") or "all rows",
            stats.get("image_tokens"),
        ),
        _loading(directory, stats),
    ]
    body = "\n".join(line for section in sections for line in section).rstrip() + "\n"
    return f"---\n{meta}---\n\n{body}"


# -- entry point ------------------------------------------------------------------------------------


def write_card(directory: Path, stats: dict[str, Any]) -> list[str]:
    """Write README.md (and token_lengths.png when there are token lengths) into `directory`.

    Returns the file names written, README.md first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    histograms = _histograms(stats)
    written = [README]
    png = directory / PNG
    if histograms:
        plot_lengths(histograms, stats, png)
        written.append(PNG)
    else:
        # A picture left by an earlier write would contradict the card's "not counted".
        png.unlink(missing_ok=True)
    readme = directory / README
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(render(directory, stats, bool(histograms)), encoding="utf-8")
    tmp.replace(readme)
    return written
