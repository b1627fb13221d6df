"""validation_report(): each tokenizer's token lengths as a summary with the histogram's bins next to it,
the rest of the stats unchanged, all of it plain JSON."""

from __future__ import annotations

import json

from tasks.data.length_stats import TOP, LengthHistogram
from tasks.data.prep_report import validation_report


def _histogram(lengths: list[int]) -> dict:
    histogram = LengthHistogram()
    histogram.add(lengths)
    return histogram.to_dict()


def test_each_tokenizer_keeps_its_summary_and_its_bins():
    stats = {
        "name": "tuna",
        "counts": {"train": 7},
        "token_lengths": {"a": _histogram([3, 3, 5, 40, 41, 900, TOP + 7]), "b": _histogram([])},
    }
    report = validation_report(stats)
    assert json.loads(json.dumps(report)) == report
    assert report["name"] == "tuna" and report["counts"] == {"train": 7}
    a = report["token_lengths"]["a"]
    assert (a["count"], a["min"], a["max"]) == (7, 3, TOP + 7) and 40 <= a["p50"] < 50
    # Lengths up to 16 get a bin each; 40 and 41 share a quarter-octave bin; the overflow bin ends past max.
    assert a["bins"][:2] == [[3, 4, 2], [5, 6, 1]]
    assert [count for _, _, count in a["bins"]] == [2, 1, 2, 1, 1]
    assert a["bins"][2][0] <= 40 and a["bins"][2][1] > 41
    assert a["bins"][-1] == [TOP, TOP + 8, 1]
    assert all(low < high for low, high, _ in a["bins"])
    assert report["token_lengths"]["b"] == {**LengthHistogram().summary(), "bins": []}


def test_the_bins_are_the_histogram_the_card_is_drawn_from():
    data = _histogram(list(range(0, 3000, 7)))
    lengths = validation_report({"token_lengths": {"t": data}})["token_lengths"]["t"]
    rebuilt = LengthHistogram.from_dict({**data, "bins": [[low, count] for low, _, count in lengths["bins"]]})
    assert rebuilt == LengthHistogram.from_dict(data) and sum(c for *_, c in lengths["bins"]) == data["count"]
