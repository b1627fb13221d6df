"""tasks.scoring.metrics: every built-in metric through the one entry point, against values worked out
by hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.scoring import metrics as scoring
from tasks.scoring.metrics import loss_scores, needs_loss, score
from tests.fixtures.scoring import metric_module

REPO = Path(__file__).resolve().parents[3]

# Two rows; the n-gram counts below are over these.
PREDICTIONS = ["the cat sat on a mat", "hello world"]
REFERENCES = ["the cat sat on the mat", "hello there world"]


def test_exact_match_normalises_case_punctuation_and_articles():
    # "The Cat!" -> "cat" == "cat"; "a dog" -> "dog" != "cat": 1 of 2.
    assert score(["exact_match"], ["The Cat!", "a dog"], ["cat", "the cat"]) == {"exact_match": 0.5}


def test_token_f1_is_the_harmonic_mean_of_word_precision_and_recall():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down] (articles dropped).
    # common = 2, P = 2/2 = 1, R = 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = (4/3) / (5/3) = 0.8.
    assert score(["token_f1"], ["the cat sat"], ["a cat sat down"]) == {"token_f1": 0.8}
    # Averaged per row: (0.8 + 0) / 2 = 0.4.
    assert score(["token_f1"], ["the cat sat", "dog"], ["a cat sat down", "bird"]) == {"token_f1": 0.4}


def test_rouge_l_is_the_lcs_f_measure_averaged_over_rows():
    # Row 1: LCS(the cat sat on a mat | the cat sat on the mat) = "the cat sat on mat" = 5;
    #   P = 5/6, R = 5/6, F = 5/6.
    # Row 2: LCS(hello world | hello there world) = 2; P = 2/2, R = 2/3, F = 2 * 1 * 2/3 / (5/3) = 0.8.
    # Mean: (5/6 + 0.8) / 2 = 0.816667.
    assert score(["rouge_l"], PREDICTIONS, REFERENCES)["rouge_l"] == pytest.approx(
        (5 / 6 + 0.8) / 2, abs=1e-6
    )


def test_rouge_score_alone_drops_chinese_which_is_why_rouge_l_segments_it():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score("猫坐在垫子上", "猫坐在垫子上")["rougeL"]
    assert default.fmeasure == 0  # no ASCII letters, no tokens: identical Chinese text scores 0
    # Per character: 猫坐在垫子上 (6) against 一只猫坐在垫子上 (8): LCS = 6, P = 6/6 = 1, R = 6/8 = 0.75,
    # F = 2 * 1 * 0.75 / 1.75 = 0.857143.
    assert score(["rouge_l"], ["猫坐在垫子上"], ["一只猫坐在垫子上"]) == {"rouge_l": 0.857143}


def test_rouge_l_keeps_latin_words_whole_inside_chinese_text():
    tokenizer = metric_module("rouge_l").CjkTokenizer()
    tokens = tokenizer.tokenize("我喜欢Python编程, Café 2024")
    assert tokens == ["我", "喜", "欢", "python", "编", "程", "café", "2024"]
    # Prediction tokens: 我 用 python (3); reference: 我 喜 欢 python (4); LCS = 我 python = 2.
    # P = 2/3, R = 2/4, F = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7 = 0.571429.
    assert score(["rouge_l"], ["我用Python"], ["我喜欢Python"]) == {"rouge_l": 0.571429}


def test_rouge_l_gives_rouge_scores_own_result_on_ascii_text():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"])
    expected = [default.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    assert score(["rouge_l"], PREDICTIONS, REFERENCES)["rouge_l"] == round(sum(expected) / 2, 6)


def test_bleu_is_corpus_bleu_over_100_with_the_brevity_penalty():
    # Clipped n-gram matches summed over the corpus (row 1 + row 2):
    #   1-grams: the cat sat on mat (5 of 6; "a" unmatched) + hello world (2 of 2)   = 7/8
    #   2-grams: the-cat cat-sat sat-on (3 of 5)            + hello-world (0 of 1)   = 3/6
    #   3-grams: the-cat-sat cat-sat-on (2 of 4)            + none                   = 2/4
    #   4-grams: the-cat-sat-on (1 of 3)                    + none                   = 1/3
    # Prediction length 6 + 2 = 8, reference length 6 + 3 = 9: BP = exp(1 - 9/8) = exp(-0.125).
    # BLEU = BP * (7/8 * 3/6 * 2/4 * 1/3) ** (1/4) = 0.882497 * 0.519648 = 0.458585.
    expected = math.exp(1 - 9 / 8) * (7 / 8 * 3 / 6 * 2 / 4 * 1 / 3) ** 0.25
    assert score(["bleu"], PREDICTIONS, REFERENCES)["bleu"] == pytest.approx(expected, abs=1e-6)


def test_bleu_uses_the_zh_tokenizer_for_chinese_references():
    # zh splits every character: 猫 坐 在 垫 子 上 (6) against 一 只 猫 坐 在 垫 子 上 (8).
    # Every n-gram of the prediction is in the reference: p1..p4 = 6/6, 5/5, 4/4, 3/3 = 1.
    # BP = exp(1 - 8/6) = exp(-1/3) = 0.716531. With 13a the sentence is one unmatched token: 0.
    assert score(["bleu"], ["猫坐在垫子上"], ["一只猫坐在垫子上"]) == {"bleu": round(math.exp(-1 / 3), 6)}
    tokenizer_for = metric_module("bleu").tokenizer_for
    assert tokenizer_for(["一只猫坐在垫子上"]) == "zh"
    assert tokenizer_for(["The Python 编程 book"]) == "13a"  # 2 CJK of 15 characters


def test_composite_weighs_rouge_l_three_to_one_against_bleu():
    # 0.75 * 0.816667 + 0.25 * 0.458585 (the two tests above) = 0.727146.
    rouge_l = (5 / 6 + 0.8) / 2
    bleu = math.exp(1 - 9 / 8) * (7 / 8 * 3 / 6 * 2 / 4 * 1 / 3) ** 0.25
    assert score(["composite"], PREDICTIONS, REFERENCES)["composite"] == pytest.approx(
        0.75 * rouge_l + 0.25 * bleu, abs=1e-6
    )


def test_accuracy_compares_the_chosen_option_label():
    predictions = ["The answer is B.", "(c)", "A) Paris", "I think the answer is a cat", "答案是D。"]
    references = ["B", "C", "B", "A", "D) 北京"]
    # Right: B, C, D; wrong: A (chose A, reference B), "a cat" (no label). 3 of 5 = 0.6.
    assert score(["accuracy"], predictions, references) == {"accuracy": 0.6}


def test_accuracy_refuses_references_without_a_label():
    with pytest.raises(ValueError, match="is not an option label"):
        score(["accuracy"], ["B"], ["Paris"])


def test_perplexity_is_exp_of_the_answer_loss_and_both_are_loss_metrics():
    # exp(1.5) = 4.481689; loss metrics come from the loss, so score() leaves them out.
    assert loss_scores(["rouge_l", "eval_loss", "perplexity"], 1.5) == {
        "eval_loss": 1.5,
        "perplexity": 4.481689,
    }
    assert loss_scores(["perplexity"], 0.0) == {"perplexity": 1.0}
    assert score(["rouge_l", "perplexity", "eval_loss"], ["a b"], ["a b"]) == {"rouge_l": 1.0}
    assert needs_loss(["rouge_l", "perplexity"]) and not needs_loss(["rouge_l", "bleu"])
    assert loss_scores(["perplexity"], 5000.0)["perplexity"] == round(math.exp(700), 6)  # no overflow


def test_every_text_metric_reads_zero_to_one_and_is_one_for_a_perfect_answer():
    from tasks.scoring.plugins import text_metric_names

    rows = ["The capital of France is Paris, founded long before 1000.", "B"]
    # accuracy needs option labels; llm_judge a judge endpoint (tests/plugins/scoring/test_llm_judge.py).
    names = [name for name in text_metric_names() if name not in ("accuracy", "llm_judge")]
    perfect = score(names, rows, rows)
    assert set(perfect) == set(names)
    assert all(0.0 <= value <= 1.0 for value in perfect.values())
    assert perfect["exact_match"] == perfect["rouge_l"] == perfect["token_f1"] == 1.0


def test_unknown_metrics_and_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match=r"unknown metric 'nope'; known metrics: eval_loss, perplexity, "):
        score(["nope"], ["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score(["rouge_l"], ["a", "b"], ["a"])
    assert score(["rouge_l"], [], []) == {"rouge_l": 0.0}


def test_modules_are_loaded_once_per_process_into_its_own_directory():
    first = scoring.load_metric("exact_match")
    assert scoring.load_metric("exact_match") is first
    copies = list((scoring.workdir() / "modules").rglob("exact_match.py"))
    assert copies, "evaluate copied the module somewhere else"


def test_scoring_needs_no_network_and_writes_nothing_outside_its_directory(tmp_path):
    """A fresh process, sockets refused, HOME empty and no HF_* / XDG_* variables: evaluate's defaults
    (~/.cache/huggingface/...) would land in HOME if the loader did not redirect them."""
    home = tmp_path / "home"
    home.mkdir()
    code = textwrap.dedent(
        """
        import json, socket

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        from tasks.scoring import metrics as scoring

        names = ["exact_match", "token_f1", "accuracy", "bleu", "rouge_l", "composite", "keyword_hit"]
        print(json.dumps({"scores": scoring.score(names, ["B"], ["B"]), "workdir": str(scoring.workdir())}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_", "TUNERFLOW_SCORING"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scores"]["exact_match"] == 1.0 and result["scores"]["accuracy"] == 1.0
    assert list(home.rglob("*")) == []  # nothing cached under HOME
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nor in the working directory
    assert not Path(result["workdir"]).exists()  # the per-process directory is removed at exit


QUESTION_ECHO = '''
"""Test metric: the share of answers that repeat a word of their question, times `weight`."""

import datasets
import evaluate


class QuestionEcho(evaluate.Metric):
    def _info(self):
        string = datasets.Value("string")
        return evaluate.MetricInfo(
            description="",
            citation="",
            features=datasets.Features({"predictions": string, "references": string, "%s": string}),
        )

    def _compute(self, predictions, references, %s, weight=1.0):
        rows = zip(predictions, %s, strict=True)
        echoes = sum(bool(set(p.lower().split()) & set(q.lower().split())) for p, q in rows)
        return {"%s": weight * echoes / len(predictions)}
'''


def _plugin(directory: Path, name: str, extra_input: str) -> None:
    (directory / name).mkdir(parents=True)
    source = QUESTION_ECHO % (extra_input, extra_input, extra_input, name)
    (directory / name / f"{name}.py").write_text(source)


def test_questions_and_options_reach_only_the_metrics_that_take_them(tmp_path, monkeypatch):
    _plugin(tmp_path, "question_echo", "questions")
    monkeypatch.setenv("TUNERFLOW_SCORING_PLUGINS", str(tmp_path))
    predictions, references = ["paris is the capital", "hello world"], ["paris", "hello world"]
    questions = ["what is the capital of france", "say something"]
    # question_echo: row 1 repeats "is", "the", "capital"; row 2 repeats nothing: 1/2, times 0.5.
    # rouge_l gets neither the questions nor question_echo's option (evaluate would refuse both).
    result = score(
        ["rouge_l", "question_echo"],
        predictions,
        references,
        questions=questions,
        options={"question_echo": {"weight": 0.5}, "llm_judge": {"model": "unused"}},
    )
    assert result == {
        "rouge_l": score(["rouge_l"], predictions, references)["rouge_l"],
        "question_echo": 0.25,
    }
    assert scoring.inputs_of("question_echo") == ("predictions", "references", "questions")
    assert score(["question_echo"], predictions, references, questions) == {"question_echo": 0.5}


def test_a_metric_that_needs_questions_or_other_inputs_says_so(tmp_path, monkeypatch):
    _plugin(tmp_path, "question_echo2", "questions")
    _plugin(tmp_path, "context_echo", "contexts")
    monkeypatch.setenv("TUNERFLOW_SCORING_PLUGINS", str(tmp_path))
    with pytest.raises(ValueError, match="'question_echo2' grades answers against their questions, but none"):
        score(["question_echo2"], ["a"], ["a"])
    with pytest.raises(ValueError, match="1 questions for 2 predictions"):
        score(["question_echo2"], ["a", "b"], ["a", "b"], questions=["q"])
    with pytest.raises(ValueError, match=r"declares inputs \['contexts'\] that tunerflow does not provide"):
        score(["context_echo"], ["a"], ["a"], questions=["q"])


def test_the_question_is_the_last_user_turn_of_the_prompt():
    conversations = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Who wrote Hamlet?"},
        ],
        [{"role": "system", "content": "No user turn."}],
    ]
    assert scoring.questions_of(conversations) == ["Capital of France?", "Who wrote Hamlet?", ""]


def test_row_values_are_each_row_s_own_score_and_a_judge_metric_must_list_its_rows(tmp_path, monkeypatch):
    # token_f1 row by row (see the token_f1 test): 0.8 and 0, in row order; their mean is score()'s 0.4.
    values = scoring.row_values("token_f1", ["dog", "the cat sat"], ["bird", "a cat sat down"])
    assert values == [0.0, pytest.approx(0.8)]
    assert scoring.row_values("exact_match", [], []) == []
    # A metric graded against the questions is computed once over the batch (the judge's concurrent
    # path), so it must hand back its per-row values; question_echo only returns its mean.
    _plugin(tmp_path, "question_echo3", "questions")
    monkeypatch.setenv("TUNERFLOW_SCORING_PLUGINS", str(tmp_path))
    with pytest.raises(ValueError, match=r"returned no per-row values; .* \{'question_echo3_rows'"):
        scoring.row_values("question_echo3", ["a"], ["a"], ["q"])
