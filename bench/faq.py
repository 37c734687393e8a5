"""Benchmark the FAQ matcher against two rapidfuzz baselines (results go to BENCHMARKS.md).

    .venv/bin/python bench/faq.py            # test split: quality, latency, build, memory, 2,000-entry scaling
    .venv/bin/python bench/faq.py --split dev
    .venv/bin/python bench/faq.py --fit      # refit the decision models on the dev split (prints constants)
    .venv/bin/python bench/faq.py --crossfit # long_dev decided by long models fitted without it (5 folds)
    .venv/bin/python bench/faq.py --judge    # long_dev, long_dev2 and each writer decided by models fitted without them
    .venv/bin/python bench/faq.py --judge-short  # dev, dev2, headlines_dev, dev3 decided by short models fitted without them; dev4

Quality is measured on bench/data/eval/faq_eval.csv (written independently of the content); the
baselines' thresholds and the matcher's decision models are tuned on the dev split only.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rapidfuzz import fuzz, process  # noqa: E402

from bot.catalog import Catalog, Topic, load_valid_catalog  # noqa: E402
from bot.matcher import Decision, Matcher  # noqa: E402
from bot.normalize import fold_key  # noqa: E402

EVAL = ROOT / "bench" / "data" / "eval" / "faq_eval.csv"
# A second development set, written later by someone who saw neither the content nor the other set:
# the judge of content changes once dev had been written against.
DEV2 = ROOT / "bench" / "data" / "eval" / "faq_dev2.csv"
# A second test set, written blind at the end of session 2 and run once per shipped state: the first
# test split had been consulted six times by then, so its figures had become optimistic.
TEST2 = ROOT / "bench" / "data" / "eval" / "faq_test2.csv"
# Long questions with the asker's situation in them (issue #14), written blind: header question,topic,
# an empty topic is out of scope. long_dev is tuned on; long_test is run at most twice.
LONG_DEV = ROOT / "bench" / "data" / "eval" / "faq_long_dev.csv"
LONG_TEST = ROOT / "bench" / "data" / "eval" / "faq_long_test.csv"
# A second long development set (session 5), written blind by two writers who saw neither the content,
# the matcher nor the other sets (column `writer`: a, b). It judges changes made for long questions on
# writing the decision models were not fitted on; its questions never go into the content.
LONG_DEV2 = ROOT / "bench" / "data" / "eval" / "faq_long_dev2.csv"
# A second long test set (session 5), written blind by two other writers (column-free, like long_test):
# run once, by the lead, on the state session 5 shipped. Headline-style questions (one formal sentence,
# as an article's or a legal Q&A's title), written blind: headlines_dev may be tuned on, headlines_test not.
LONG_TEST2 = ROOT / "bench" / "data" / "eval" / "faq_long_test2.csv"
HEADLINES_DEV = ROOT / "bench" / "data" / "eval" / "faq_headlines_dev.csv"
HEADLINES_TEST = ROOT / "bench" / "data" / "eval" / "faq_headlines_test.csv"
# A third short development set (session 6), villager-style chat questions written blind by two writers who
# saw only the topic list (column `writer`: a for the first 21 topics, b for the last 21; 50 out of scope
# each): it judges changes to the short decisions, which dev and test had been consulted on too often.
DEV3 = ROOT / "bench" / "data" / "eval" / "faq_dev3.csv"
# Its blind twin (session 6): two other writers, same brief, the same topic halves; nobody who changed the
# matcher saw it. Run by the lead on the state session 6 started from and on the state it shipped.
TEST3 = ROOT / "bench" / "data" / "eval" / "faq_test3.csv"
# A fourth short development set (session 7), written blind by two writers who never saw the content (column
# `writer`: a the last 21 topics, b the first 21; an empty topic is out of scope): measured first on the state
# session 7 started from, then used as a check of its changes, never fitted on.
DEV4 = ROOT / "bench" / "data" / "eval" / "faq_dev4.csv"
# Its blind twin (session 7): two other writers, same brief (a the first 21 topics, b the last 21); nobody who
# changed the matcher saw it. Run by the lead on the state session 7 started from and on the state it shipped.
TEST4 = ROOT / "bench" / "data" / "eval" / "faq_test4.csv"
SPLIT_FILES = {
    "dev2": DEV2, "test2": TEST2, "long_dev": LONG_DEV, "long_dev2": LONG_DEV2, "long_test": LONG_TEST,
    "long_test2": LONG_TEST2, "headlines_dev": HEADLINES_DEV, "headlines_test": HEADLINES_TEST,
    "dev3": DEV3, "test3": TEST3, "dev4": DEV4, "test4": TEST4,
}
SPLITS = [
    "dev", "dev2", "dev3", "dev4", "long_dev", "long_dev2", "headlines_dev",
    "test", "test2", "test3", "test4", "long_test", "long_test2", "headlines_test",
]
# The long sets the shipped long decision models are fitted on (with the calibration files and content).
LONG_FIT_SPLITS = ("long_dev", "long_dev2")
TEST_SPLITS = {"test", "test2", "test3", "test4", "long_test", "long_test2", "headlines_test"}
CALIBRATION = ROOT / "bench" / "data" / "eval" / "oos_calibration.csv"
# Questions in and out of scope written only to fit the decision models (never reported on).
CALIBRATION_2 = ROOT / "bench" / "data" / "eval" / "calibration.csv"
# Long out-of-scope questions (neighbouring services told with a situation), written in session 3 by the
# engineer who wrote the long examples, for fitting only: the long sets had no out-of-scope rows to fit on.
CALIBRATION_LONG = ROOT / "bench" / "data" / "eval" / "calibration_long.csv"
NONE = "none"

# (decision, ranked topic ids) for one question
Prediction = tuple[str, list[str]]
Predict = Callable[[str], Prediction]


@dataclass(frozen=True)
class Row:
    split: str
    topic: str
    noisy: bool
    question: str
    writer: str = ""  # who wrote it, where a set has several writers (long_dev2: a, b)

    @property
    def group(self) -> str:
        """One writer's questions: the unit the leave-one-writer-out judge holds out."""
        return f"{self.split}:{self.writer}" if self.writer else self.split


def read_rows(path: Path, split: str) -> list[Row]:
    """Rows of one file; files without a split column belong to `split`, an empty topic is out of scope."""
    with path.open(encoding="utf-8") as f:
        return [
            Row(r.get("split") or split, (r.get("topic") or "").strip() or NONE, r.get("noisy") == "1", r["question"],
                (r.get("writer") or "").strip())
            for r in csv.DictReader(f)
        ]


def load_rows(split: str | None = None) -> list[Row]:
    rows = read_rows(SPLIT_FILES.get(split or "", EVAL), split or "")
    return [r for r in rows if split is None or r.split == split]


def load_calibration() -> list[Row]:
    return [r for path in (CALIBRATION, CALIBRATION_2, CALIBRATION_LONG) for r in read_rows(path, "calibration")]


# --- Metrics --------------------------------------------------------------------------------------


def evaluate(predict: Predict, rows: list[Row]) -> dict[str, float]:
    """Quality figures; see BENCHMARKS.md for the definitions."""
    c = dict.fromkeys(
        ["in", "oos", "top1", "rank1", "ans_ok", "ans_bad", "choose_ok", "choose_bad", "ask_ok", "ask_bad",
         "abstain_in", "oos_answer", "oos_choose", "oos_ask", "oos_abstain", "noisy", "noisy_top1", "among", "nothing"],
        0,
    )
    for row in rows:
        decision, ranked = predict(row.question)
        top = ranked[0] if ranked else None
        if row.topic == NONE:
            c["oos"] += 1
            c[{"answer": "oos_answer", "choose": "oos_choose", "ask_back": "oos_ask", "abstain": "oos_abstain"}[decision]] += 1
            continue
        c["in"] += 1
        right = top == row.topic
        c["rank1"] += right
        if decision in ("choose", "ask_back"):
            c["among" if row.topic in ranked else "nothing"] += 1
        if decision == "abstain":
            c["abstain_in"] += 1
            c["nothing"] += 1
        else:
            key = {"answer": "ans", "choose": "choose", "ask_back": "ask"}[decision]
            c[f"{key}_{'ok' if right else 'bad'}"] += 1
            c["top1"] += right
        if row.noisy:
            c["noisy"] += 1
            c["noisy_top1"] += right and decision != "abstain"
    answered = c["ans_ok"] + c["ans_bad"] + c["oos_answer"]
    wrong = c["ans_bad"] + c["oos_answer"]
    n = c["in"] + c["oos"]
    return {
        **{k: float(v) for k, v in c.items()},
        "top1_rate": c["top1"] / max(c["in"], 1),
        "rank1_rate": c["rank1"] / max(c["in"], 1),
        "answered_correct_rate": c["ans_ok"] / max(c["in"], 1),
        "among_rate": c["among"] / max(c["in"], 1),  # given choices (or asked back) that hold the right topic
        "nothing_rate": c["nothing"] / max(c["in"], 1),  # abstained, or choices without the right topic
        "choose_in_rate": (c["choose_ok"] + c["choose_bad"] + c["ask_ok"] + c["ask_bad"]) / max(c["in"], 1),
        "abstain_in_rate": c["abstain_in"] / max(c["in"], 1),
        "wrong_rate": wrong / max(answered, 1),
        "wrong_all_rate": wrong / max(n, 1),
        "oos_abstention": (c["oos"] - c["oos_answer"]) / max(c["oos"], 1),
        "oos_strict": c["oos_abstain"] / max(c["oos"], 1),
        "answered_share": answered / max(n, 1),
        "noisy_top1_rate": c["noisy_top1"] / max(c["noisy"], 1),
    }


# --- Systems --------------------------------------------------------------------------------------


def matcher_predict(matcher: Matcher) -> Predict:
    def predict(text: str) -> Prediction:
        m = matcher.match(text)
        return m.decision.value, [c.topic for c in m.candidates]

    return predict


class WRatioBaseline:
    """rapidfuzz WRatio of the query against every example question; best topic wins; abstain under a threshold."""

    def __init__(self, catalog: Catalog, folded: bool, threshold: float = 0.0):
        self.folded = folded
        self.threshold = threshold
        self.texts: list[str] = []
        self.topics: list[str] = []
        for topic in catalog.topics.values():
            for text in (topic.title, *topic.examples):
                self.texts.append(fold_key(text) if folded else text)
                self.topics.append(topic.id)

    def best(self, text: str) -> tuple[str, float]:
        query = fold_key(text) if self.folded else text
        _, score, i = process.extractOne(query, self.texts, scorer=fuzz.WRatio)
        return self.topics[i], score

    def predict(self, text: str) -> Prediction:
        topic, score = self.best(text)
        return ("answer" if score >= self.threshold else "abstain"), [topic]

    def tune(self, rows: list[Row]) -> float:
        """Pick the threshold that maximises dev accuracy: right answers in scope plus abstentions out of scope."""
        scored = [(row, *self.best(row.question)) for row in rows]
        best_t, best_acc = 0.0, -1.0
        for t in np.arange(0, 100.5, 0.5):
            acc = sum((s >= t and top == r.topic) if r.topic != NONE else (s < t) for r, top, s in scored)
            if acc > best_acc:
                best_t, best_acc = float(t), acc
        self.threshold = best_t
        return best_t


# --- Content cross-validation ---------------------------------------------------------------------


def content_folds(catalog: Catalog, folds: int = 5):
    """Yield (matcher without every k-th example, held-out (example, topic) pairs), k = 0..folds-1.

    Held-out examples are paraphrases the index has not seen: the closest thing to new questions
    that does not touch the evaluation set (used for choosing signals and fitting decisions)."""
    for k in range(folds):
        topics, held = {}, []
        for tid, t in catalog.topics.items():
            held += [(e, tid) for i, e in enumerate(t.examples) if i % folds == k]
            topics[tid] = dataclasses.replace(t, examples=tuple(e for i, e in enumerate(t.examples) if i % folds != k))
        yield Matcher(dataclasses.replace(catalog, topics=topics)), held


def content_cv_rank1(catalog: Catalog, folds: int = 5) -> float:
    right = total = 0
    for matcher, held in content_folds(catalog, folds):
        for text, tid in held:
            ranked = matcher.signals(text).ranked
            right += bool(ranked) and ranked[0].topic == tid
            total += 1
    return right / max(total, 1)


# --- Decision-model fitting (dev split only) ------------------------------------------------------

ANSWER_FEATURES = ("score", "margin", "ratio", "coverage", "unknown", "overlap", "long", "nb_agree", "nb_margin")
SCOPE_FEATURES = ("score", "coverage", "unknown", "overlap", "recall", "log_words", "ours", "neighbour", "foreign", "long")
# Long messages also weigh how many of our subjects against how many neighbouring services they name,
# and (session 5) what the asking parts name.
LONG_SCOPE_FEATURES = SCOPE_FEATURES + ("balance", "ask_ours", "ask_neighbour", "ask_foreign", "ask_balance")
# Session 5: the long answer model reads length-free figures (ratios rather than scores, which a long story
# lowers for every topic alike), naive Bayes' margin and the latent semantic vectors' margin and cosine for the
# lexical top topic (bot/matcher.py `_Lsa`); six features, fewer than before.
LONG_ANSWER_FEATURES = ("ratio", "third", "coverage", "nb_margin", "lsa_margin", "lsa_cos")
# Session 6: the short scope model also reads whether a neighbouring service is named before any of our
# subjects (`lead_neighbour`: "hộ chiếu gắn chip có lợi gì"), whether the question names what people do with
# the card (`procedure`: "đổi thẻ", "cấp lại", "tờ khai") and the LSA cosine of the top topic.
SHORT_SCOPE_FEATURES = SCOPE_FEATURES + ("lead_neighbour", "procedure", "lsa_cos")
# Thresholds are picked on the dev split (with the calibration file) to maximise in-scope top-1 plus
# half the share answered right, under these ceilings (stricter than the targets, to leave a margin).
MAX_WRONG_RATE = 0.0125  # session 7 (was 0.015; 0.02 before session 6): on the fitting set the wrong rate is lower
# than on blind writers (session 6 fitted at 0.015: test 0.022, dev4 0.022), so the ceiling keeps a wider margin
MIN_STRICT_ABSTENTION = 0.90
# Session 6: short out-of-scope questions answered, at most this share on the fitting set; choices may be
# offered at a lower P(ours) than answers (`Thresholds.offer`), so the answer's bar can rise without turning
# in-scope questions away.
MAX_OOS_ANSWERED = 0.01
SHORT_OFFER = True
# Short development sets the short models are also fitted on (session 6; their short questions only: the long
# models keep their fitting set). Judged by `--judge-short`, each decided by models fitted without it.
SHORT_FIT_SPLITS = ("dev2", "headlines_dev", "dev3")  # dev3 since session 7 (dev4 judges instead)
# Long messages (issue #14, targets: wrong <= 0.05, out-of-scope abstention >= 0.95), with a margin.
MAX_WRONG_RATE_LONG = 0.0275  # session 6 (was 0.03): with session 6's short examples in the content, 0.03 let
# the long models answer more wrongly on unseen writers (--judge, leave one writer out: wrong 0.019 -> 0.029)
MAX_OOS_ANSWERED_LONG = 0.025
MIN_STRICT_ABSTENTION_LONG = 0.70
# Session 5: long messages may be offered choices at a lower P(ours) than they may be answered.
LONG_OFFER = False


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method with an L2 penalty (not on the bias); returns [bias, w...]."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    reg = np.eye(len(w)) * l2
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + reg @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fitting_set(catalog: Catalog, long_splits: tuple[str, ...] = LONG_FIT_SPLITS,
                short_splits: tuple[str, ...] = SHORT_FIT_SPLITS) -> tuple[Matcher, list[Row], list]:
    """The questions the decision models are fitted on, with their signals: the dev split, the
    calibration files, the long development sets `long_splits`, the short development sets `short_splits`
    (their short questions fit the short models only, see `regimes`) and the content's examples, each held
    out of the index that scores it."""
    matcher = Matcher(catalog)
    rows = load_rows("dev") + load_calibration()
    for split in (*long_splits, *short_splits):
        if SPLIT_FILES[split].exists():
            rows += load_rows(split)
    sigs = [matcher.signals(r.question) for r in rows]
    # Held-out content examples add in-scope questions whose ranking is not flattered by the content
    # having been written with the dev split in view.
    for fold_matcher, held in content_folds(catalog):
        for text, tid in held:
            rows.append(Row("content", tid, False, text))
            sigs.append(fold_matcher.signals(text))
    return matcher, rows, sigs


def regimes(matcher: Matcher, sigs, rows: list[Row] | None = None) -> tuple[list[int], list[int]]:
    """Indices of the usable short and long questions (long: at least Weights.long_words words); the long
    questions of the short-only fitting sets (SHORT_FIT_SPLITS) are left out."""
    usable = [i for i, s in enumerate(sigs) if s.ranked and s.norm.words > matcher.thresholds.ask_back_words]
    short = [i for i in usable if not sigs[i].features["long"]]
    long = [i for i in usable if sigs[i].features["long"] and not (rows and rows[i].split in SHORT_FIT_SPLITS)]
    return short, long


def objective_short(top1: float, answered_right: float) -> float:
    return top1 + 0.5 * answered_right


def objective_long(top1: float, answered_right: float) -> float:
    # a careful asker should get an answer, not a list: answered right first
    return answered_right + 0.25 * top1


SHORT_CEILINGS = (MAX_WRONG_RATE, MIN_STRICT_ABSTENTION, MAX_OOS_ANSWERED, objective_short, SHORT_SCOPE_FEATURES, ANSWER_FEATURES)
LONG_CEILINGS = (MAX_WRONG_RATE_LONG, MIN_STRICT_ABSTENTION_LONG, MAX_OOS_ANSWERED_LONG, objective_long, LONG_SCOPE_FEATURES, LONG_ANSWER_FEATURES)


def fit(catalog: Catalog) -> None:
    """Fit the decision models on the dev splits, the calibration files and held-out content; pick thresholds.

    Short and long messages (at least Weights.long_words words) get models and thresholds of their own:
    a long message's scores are spread over many words, so the same figures mean something else."""
    matcher, rows, sigs = fitting_set(catalog)
    short, long = regimes(matcher, sigs, rows)
    (a, s_, ta, tc, stats, to) = fit_regime(rows, sigs, short, *SHORT_CEILINGS, offer=SHORT_OFFER)
    (la, ls, lta, ltc, lstats, lto) = fit_regime(rows, sigs, long, *LONG_CEILINGS, offer=LONG_OFFER)
    print(f"# fitted on {len(short) + len(long)} dev + calibration + held-out content questions: {len(short)} short, {len(long)} long")
    print(f"ANSWER_MODEL = {a!r}")
    print(f"SCOPE_MODEL = {s_!r}")
    print(f"LONG_ANSWER_MODEL = {la!r}")
    print(f"LONG_SCOPE_MODEL = {ls!r}")
    print(f"Thresholds(answer={ta}, choose={tc}, offer={to if SHORT_OFFER else None}, answer_long={lta}, choose_long={ltc}, offer_long={lto if LONG_OFFER else None})")
    print(f"# short on the fitting set: {stats}")
    print(f"# long on the fitting set: {lstats}")


def crossfit(catalog: Catalog, folds: int = 5) -> None:
    """long_dev judged by long models fitted without it: each fifth of long_dev is decided by models and
    thresholds fitted on the rest of the fitting set. long_dev is in the fitting set, so its plain figures
    are optimistic (in session 3 long_dev answered right 0.766, the blind long_test 0.692); these are not."""
    import bot.matcher as M

    matcher, rows, sigs = fitting_set(catalog)
    _, long = regimes(matcher, sigs, rows)
    dev_rows = [i for i in long if rows[i].split == "long_dev"]
    n = dict.fromkeys(["in", "oos", "ans_ok", "ans_bad", "oos_answer", "oos_offered", "offered_ok", "rank1"], 0)
    for k in range(folds):
        held = set(dev_rows[k::folds])
        am, sm, ta, tc, _, to = fit_regime(rows, sigs, [i for i in long if i not in held], *LONG_CEILINGS, offer=LONG_OFFER)
        for i in held:
            f = sigs[i].features
            offered = M._logistic(sm, f) >= to
            answer = M._logistic(sm, f) >= tc and M._logistic(am, f) >= ta
            right = sigs[i].ranked[0].topic == rows[i].topic
            if rows[i].topic == NONE:
                n["oos"] += 1
                n["oos_answer"] += answer
                n["oos_offered"] += offered and not answer
            else:
                n["in"] += 1
                n["rank1"] += right
                n["ans_ok"] += answer and right
                n["ans_bad"] += answer and not right
                n["offered_ok"] += offered and right
    all_in = sum(r.topic != NONE for r in load_rows("long_dev"))  # with the rare ones that rank nothing
    answered = n["ans_ok"] + n["ans_bad"] + n["oos_answer"]
    print(f"long_dev cross-fitted ({folds} folds; {n['in']} of {all_in} in scope ranked, {n['oos']} out of scope): "
          f"rank-1 {n['rank1'] / all_in:.3f}, top-1 {n['offered_ok'] / all_in:.3f}, answered right {n['ans_ok'] / all_in:.3f} ({n['ans_ok']}), "
          f"wrong {(n['ans_bad'] + n['oos_answer']) / max(answered, 1):.3f} ({n['ans_bad']} + {n['oos_answer']} out of scope), "
          f"oos abstention {1 - n['oos_answer'] / max(n['oos'], 1):.3f}")


def judge(catalog: Catalog, folds: int = 5) -> None:
    """The long decision models judged on writing they were not fitted on (session 5).

    - transfer: long_dev2 decided by long models fitted with long_dev (as shipped before session 5) and
      long_dev decided by models fitted with long_dev2 instead;
    - leave one writer out: each writer's questions (long_dev; long_dev2's a and b) decided by models
      fitted on the fitting set with the other writers' questions (the main judge: the blind sets are
      written by other people);
    - cross-fitted: both sets pooled, each fifth decided by models fitted on the rest.
    Short messages of these sets keep the shipped short models; every figure is the bench's own."""
    from bot.matcher import Models

    splits = tuple(s for s in ("long_dev", "long_dev2") if SPLIT_FILES[s].exists())
    matcher, rows, sigs = fitting_set(catalog, splits)
    _, long = regimes(matcher, sigs, rows)
    judged = [i for i, r in enumerate(rows) if r.split in splits]

    def fitted_without(held: set[int]) -> Matcher:
        am, sm, ta, tc, _, to = fit_regime(rows, sigs, [i for i in long if i not in held], *LONG_CEILINGS, offer=LONG_OFFER)
        models = dataclasses.replace(matcher.models, answer_long=am, scope_long=sm)
        th = dataclasses.replace(matcher.thresholds, answer_long=ta, choose_long=tc, offer_long=to if LONG_OFFER else None)
        return matcher.deciding_with(th, models)

    def decide(plan: list[tuple[set[int], Matcher]]) -> dict[int, Prediction]:
        out = {}
        for held, m in plan:
            predict = matcher_predict(m)
            for i in held:
                out[i] = predict(rows[i].question)
        return out

    def line(name: str, preds: dict[int, Prediction], keep: list[int]) -> dict[str, float]:
        got = {rows[i].question: preds[i] for i in keep}
        q = evaluate(lambda text: got[text], [rows[i] for i in keep])
        print(f"{name:<34} {int(q['in']):>4} {int(q['oos']):>4} {pct(q['rank1_rate']):>6} {pct(q['top1_rate']):>6} "
              f"{pct(q['answered_correct_rate']):>6} {pct(q['among_rate']):>6} {pct(q['nothing_rate']):>6} {pct(q['wrong_rate']):>6} "
              f"{pct(q['oos_abstention']):>6} {pct(q['oos_strict']):>6}   {int(q['ans_ok'])} right, {int(q['ans_bad'])} + {int(q['oos_answer'])} wrong")
        return q

    print(f"{'judge':<34} {'in':>4} {'oos':>4} {'rank-1':>6} {'top-1':>6} {'ans ok':>6} {'among':>6} {'none':>6} {'wrong':>6} {'oos ab':>6} {'strict':>6}")
    shipped = decide([(set(judged), matcher)])
    for split in splits:
        line(f"{split}, shipped models", shipped, [i for i in judged if rows[i].split == split])
    if len(splits) == 2:
        by_split = {s: {i for i in judged if rows[i].split == s} for s in splits}
        transfer = decide([(by_split[s], fitted_without(by_split[s])) for s in splits])
        for s in splits:
            line(f"{s}, fitted on the other set", transfer, sorted(by_split[s]))
    groups = list(dict.fromkeys(rows[i].group for i in judged))
    held = {g: {i for i in judged if rows[i].group == g} for g in groups}
    lowo = decide([(held[g], fitted_without(held[g])) for g in groups])
    for g in groups:
        line(f"{g}, writer left out", lowo, sorted(held[g]))
    line("all, leave one writer out", lowo, judged)
    fold_of = {i: k % folds for k, i in enumerate(judged)}
    xf = decide([({i for i in judged if fold_of[i] == k}, fitted_without({i for i in judged if fold_of[i] == k})) for k in range(folds)])
    for s in splits:
        line(f"{s}, cross-fitted (pooled sets)", xf, [i for i in judged if rows[i].split == s])
    line("all, cross-fitted", xf, judged)


def judge_short(catalog: Catalog) -> None:
    """The short decision models judged on questions they were not fitted on (session 6).

    - leave one set out: dev, dev2, headlines_dev and the calibration files, each decided by short models and
      thresholds fitted on the fitting set without it (its long questions keep the shipped long models);
    - dev4 (written blind for session 7, never fitted on; dev3 until session 7, now in the fitting set and left out
      above), per writer, decided by the short models fitted on the whole fitting set now (`--fit`) and by the
      models shipped in bot/matcher.py (the same once pasted)."""
    matcher, rows, sigs = fitting_set(catalog)
    short, _ = regimes(matcher, sigs, rows)

    def fitted_without(split: str | None) -> Matcher:
        keep = [i for i in short if rows[i].split != split]
        am, sm, ta, tc, _, to = fit_regime(rows, sigs, keep, *SHORT_CEILINGS, offer=SHORT_OFFER)
        models = dataclasses.replace(matcher.models, answer=am, scope=sm)
        th = dataclasses.replace(matcher.thresholds, answer=ta, choose=tc, offer=to if SHORT_OFFER else None)
        return matcher.deciding_with(th, models)

    def line(name: str, q: dict[str, float]) -> None:
        print(f"{name:<34} {int(q['in']):>4} {int(q['oos']):>4} {pct(q['rank1_rate']):>6} {pct(q['top1_rate']):>6} "
              f"{pct(q['answered_correct_rate']):>6} {pct(q['among_rate']):>6} {pct(q['nothing_rate']):>6} {pct(q['wrong_rate']):>6} "
              f"{pct(q['oos_abstention']):>6} {pct(q['oos_strict']):>6}   {int(q['ans_ok'])} right, {int(q['ans_bad'])} + {int(q['oos_answer'])} wrong, "
              f"{int(q['choose_ok'])} choices right first, {int(q['choose_bad'])} wrong first")

    print(f"{'judge (short models)':<34} {'in':>4} {'oos':>4} {'rank-1':>6} {'top-1':>6} {'ans ok':>6} {'among':>6} {'none':>6} {'wrong':>6} {'oos ab':>6} {'strict':>6}")
    pooled: list[Row] = []
    preds: list[Prediction] = []  # in the order of `pooled` (a question may occur in two sets)
    for split in ("dev", *SHORT_FIT_SPLITS, "calibration"):
        judged = [r for r in rows if r.split == split]
        predict = matcher_predict(fitted_without(split))
        got = {r.question: predict(r.question) for r in judged}
        line(f"{split}, set left out", evaluate(lambda text: got[text], judged))
        if split != "calibration":
            pooled += judged
            preds += [got[r.question] for r in judged]
    answers = iter(preds)
    line(f"{' + '.join(('dev', *SHORT_FIT_SPLITS))}, pooled", evaluate(lambda text: next(answers), pooled))
    if SPLIT_FILES["dev4"].exists():
        dev4 = load_rows("dev4")
        for name, m in (("fitted now", fitted_without(None)), ("shipped", matcher)):
            predict = matcher_predict(m)
            got = {r.question: predict(r.question) for r in dev4}
            for writer in sorted({r.writer for r in dev4}):
                line(f"dev4:{writer}, {name}", evaluate(lambda text: got[text], [r for r in dev4 if r.writer == writer]))
            line(f"dev4, {name}", evaluate(lambda text: got[text], dev4))


def fit_regime(rows, sigs, keep, max_wrong, min_strict, max_oos_answered, objective, scope_features=SCOPE_FEATURES,
               answer_features=ANSWER_FEATURES, offer: bool = False):
    """Fit P(right) and P(ours) on the questions `keep`, then the thresholds that maximise `objective`
    under the ceilings; returns (answer model, scope model, answer threshold, choose threshold, figures)."""
    import bot.matcher as M

    feats = [sigs[i].features for i in keep]
    in_scope = np.array([rows[i].topic != NONE for i in keep], dtype=float)
    right = np.array([rows[i].topic == sigs[i].ranked[0].topic for i in keep], dtype=float)
    names_a = [n for n in answer_features if n != "long"]
    names_s = [n for n in scope_features if n != "long"]
    xa = np.array([[f[n] for n in names_a] for f in feats])
    xs = np.array([[f[n] for n in names_s] for f in feats])
    wa = fit_logistic(xa, right)
    ws = fit_logistic(xs, in_scope)
    answer_model = (round(float(wa[0]), 3), {n: round(float(v), 3) for n, v in zip(names_a, wa[1:])})
    scope_model = (round(float(ws[0]), 3), {n: round(float(v), 3) for n, v in zip(names_s, ws[1:])})
    pa = np.array([M._logistic(answer_model, f) for f in feats])
    ps = np.array([M._logistic(scope_model, f) for f in feats])
    oos = in_scope == 0
    best = None
    for ta in np.arange(0.30, 0.96, 0.025):
        for tc in np.arange(0.10, 0.91, 0.025):
            answer = (pa >= ta) & (ps >= tc)
            wrong = (answer & ((right == 0) | oos)).sum() / max(answer.sum(), 1)
            oos_answered = (answer & oos).sum() / max(oos.sum(), 1)
            if wrong > max_wrong or oos_answered > max_oos_answered:
                continue
            answered_right = (answer & (right == 1) & ~oos).sum() / max((~oos).sum(), 1)
            # choices may be offered at a lower P(ours) than answers (long messages, session 5)
            for to in (np.arange(0.10, tc + 1e-9, 0.025) if offer else (tc,)):
                offered = ps >= to
                strict = (~offered & oos).sum() / max(oos.sum(), 1)
                if strict < min_strict:
                    continue
                top1 = (offered & (right == 1) & ~oos).sum() / max((~oos).sum(), 1)
                value = objective(top1, answered_right)
                if best is None or value > best[0] + 1e-9:
                    best = (value, round(float(ta), 3), round(float(tc), 3),
                            f"top-1 {top1:.3f}, answered right {answered_right:.3f}, wrong {wrong:.3f}, strict abstention {strict:.3f}, out of scope answered {oos_answered:.3f}",
                            round(float(to), 3))
    return answer_model, scope_model, best[1], best[2], best[3], best[4]


# --- Speed and size -------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def latency(predict: Predict, queries: list[str], warmup: int = 50, rounds: int = 3) -> tuple[float, float]:
    """Per-query latency in ms after warm-up: (p50, p99) over all queries and rounds."""
    wall, _ = timings(predict, queries, warmup, rounds)
    return wall


def timings(predict: Predict, queries: list[str], warmup: int = 50, rounds: int = 3) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-query (p50, p99) in ms after warm-up: wall-clock time, and the thread's CPU time.

    On the shared 2-core machine a process that is ready to run often waits for a core; that wait
    counts in the wall-clock time and not in the CPU time, so the two together separate what the
    matcher costs from what the machine's load adds."""
    for q in queries[:warmup]:
        predict(q)
    wall, cpu = [], []
    gc.collect()
    for _ in range(rounds):
        for q in queries:
            c = time.thread_time_ns()
            t = time.perf_counter_ns()
            predict(q)
            wall.append((time.perf_counter_ns() - t) / 1e6)
            cpu.append((time.thread_time_ns() - c) / 1e6)

    def p50_p99(times: list[float]) -> tuple[float, float]:
        times.sort()
        return statistics.median(times), times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]

    return p50_p99(wall), p50_p99(cpu)


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def build_time(make: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        make()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def synthetic_catalog(catalog: Catalog, n: int = 2000, seed: int = 0) -> Catalog:
    """A catalog of n topics made from the real ones: each copy swaps some words for words of other
    topics and carries a few made-up words of its own, so that the vocabulary grows with the size."""
    rng = random.Random(seed)
    real = list(catalog.topics.values())
    words = sorted({w for t in real for e in t.examples for w in e.split()})
    topics: dict[str, Topic] = {}
    for i in range(n):
        base = real[i % len(real)]
        own = [f"{rng.choice('bcdghklmnstvx')}{rng.choice(['a', 'o', 'u', 'ie', 'uo'])}{rng.choice(['n', 'ng', 'c', 't', ''])}{i}" for _ in range(3)]
        examples = []
        for e in base.examples:
            toks = e.split()
            for _ in range(rng.randint(1, 2)):
                toks[rng.randrange(len(toks))] = rng.choice(words)
            toks.insert(rng.randrange(len(toks) + 1), rng.choice(own))
            examples.append(" ".join(toks))
        tid = f"{base.id}_{i}"
        topics[tid] = dataclasses.replace(base, id=tid, title=f"{base.title} {own[0]}", examples=tuple(examples))
    return dataclasses.replace(catalog, topics=topics)


# --- Report ---------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def pct(x: float) -> str:
    return f"{x:.3f}"


def report_split(split: str, rows: list[Row], catalog: Catalog, systems, errors: bool) -> None:
    """Quality and latency of every system on one split, printed as one table."""
    n_in = sum(r.topic != NONE for r in rows)
    print(f"\nsplit: {split}: {len(rows)} questions ({n_in} in scope, {len(rows) - n_in} out of scope)")
    results = {}
    queries = [r.question for r in rows]
    for name, make in systems:
        base_rss = rss_mb()
        predict = make(catalog)
        grown = rss_mb() - base_rss
        quality = evaluate(predict, rows)
        load = load_average()
        (p50, p99), (c50, c99) = timings(predict, queries)
        build = build_time(lambda: make(catalog))
        results[name] = (quality, p50, p99, build, grown, c50, c99, f"{load} -> {load_average()}")

    header = (
        f"{'system':<14} {'top-1':>6} {'rank-1':>6} {'ans ok':>6} {'among':>6} {'none':>6} {'choice':>6} {'wrong':>6} {'wr/all':>6} "
        f"{'oos ab':>6} {'strict':>6} {'answ':>6} {'noisy':>6} {'p50ms':>6} {'p99ms':>6} {'build':>7} {'ΔRSS':>6} {'cpu50':>6} {'cpu99':>6}  load (1/5/15 min) before -> after timing"
    )
    print(header)
    for name, (q, p50, p99, build, grown, c50, c99, load) in results.items():
        print(
            f"{name:<14} {pct(q['top1_rate']):>6} {pct(q['rank1_rate']):>6} {pct(q['answered_correct_rate']):>6} {pct(q['among_rate']):>6} "
            f"{pct(q['nothing_rate']):>6} {pct(q['choose_in_rate']):>6} "
            f"{pct(q['wrong_rate']):>6} {pct(q['wrong_all_rate']):>6} {pct(q['oos_abstention']):>6} {pct(q['oos_strict']):>6} "
            f"{pct(q['answered_share']):>6} {pct(q['noisy_top1_rate']):>6} {p50:>6.2f} {p99:>6.2f} {build:>5.0f}ms {grown:>4.1f}MB {c50:>6.2f} {c99:>6.2f}  {load}"
        )
    q = results["matcher"][0]
    print(
        f"matcher detail: in scope {int(q['in'])}: answered right {int(q['ans_ok'])}, answered wrong {int(q['ans_bad'])}, "
        f"choices right first {int(q['choose_ok'])}, choices wrong first {int(q['choose_bad'])}, asked back {int(q['ask_ok'] + q['ask_bad'])}, "
        f"right among choices {int(q['among'])}, nothing useful {int(q['nothing'])} (abstained {int(q['abstain_in'])}); "
        f"out of scope {int(q['oos'])}: answered {int(q['oos_answer'])}, choices {int(q['oos_choose'])}, "
        f"asked back {int(q['oos_ask'])}, abstained {int(q['oos_abstain'])}"
    )
    base_top1 = max(results["wratio-raw"][0]["top1_rate"], results["wratio-folded"][0]["top1_rate"])
    print(f"top-1 ratio matcher / best baseline: {q['top1_rate'] / max(base_top1, 1e-9):.2f}x")
    _, p50, p99, _, _, c50, c99, _ = results["matcher"]
    _, b50, b99, _, _, bc50, bc99, _ = results["wratio-folded"]
    print(f"latency ratio matcher / wratio-folded: wall p50 {p50 / b50:.3f}, p99 {p99 / b99:.3f}; cpu p50 {c50 / bc50:.3f}, p99 {c99 / bc99:.3f}")
    if errors:
        predict = matcher_predict(Matcher(catalog))
        for r in rows:
            d, ranked = predict(r.question)
            top = ranked[0] if ranked else None
            if (r.topic == NONE and d == "answer") or (r.topic != NONE and (d == "abstain" or top != r.topic)):
                print(f"  {d:<8} gold={r.topic:<24} top={str(top):<24} {r.question}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", nargs="+", default=["test"], choices=SPLITS, help="one or more splits, reported one after another")
    parser.add_argument("--fit", action="store_true", help="refit the decision models on the dev split")
    parser.add_argument("--crossfit", action="store_true", help="long_dev decided by long models fitted without it (5 folds)")
    parser.add_argument("--judge", action="store_true", help="long_dev and long_dev2 decided by long models fitted without them")
    parser.add_argument("--judge-short", action="store_true", help="short dev sets decided by short models fitted without them; dev4")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 2,000-entry synthetic run")
    parser.add_argument("--no-cv", action="store_true", help="skip the content sanity check and cross-validation")
    parser.add_argument("--errors", action="store_true", help="list the matcher's mistakes on the split (development splits only)")
    args = parser.parse_args(argv)
    if args.errors and TEST_SPLITS & set(args.split):
        parser.error("--errors is for development splits: test errors are never read")

    catalog = load_valid_catalog()
    if args.fit:
        fit(catalog)
        return 0
    if args.crossfit:
        crossfit(catalog)
        return 0
    if args.judge:
        judge(catalog)
        return 0
    if args.judge_short:
        judge_short(catalog)
        return 0

    dev = load_rows("dev")
    print(f"machine: {machine()}")
    print(f"content: {len(catalog.topics)} topics, {sum(len(t.examples) for t in catalog.topics.values())} examples "
          f"({sum(len(t.long_examples) for t in catalog.topics.values())} long)")
    thresholds = {folded: WRatioBaseline(catalog, folded).tune(dev) for folded in (False, True)}
    print(f"baseline thresholds tuned on dev: wratio-raw {thresholds[False]}, wratio-folded {thresholds[True]}")

    def make_matcher(cat: Catalog) -> Predict:
        return matcher_predict(Matcher(cat))

    def make_baseline(folded: bool) -> Callable[[Catalog], Predict]:
        return lambda cat: WRatioBaseline(cat, folded, thresholds[folded]).predict

    systems: list[tuple[str, Callable[[Catalog], Predict]]] = [
        ("matcher", make_matcher),
        ("wratio-raw", make_baseline(False)),
        ("wratio-folded", make_baseline(True)),
    ]
    queries: list[str] = []
    for split in args.split:
        rows = load_rows(split)
        queries = queries or [r.question for r in rows]
        report_split(split, rows, catalog, systems, args.errors)

    if not args.no_cv:
        sanity = evaluate(
            matcher_predict(Matcher(catalog)),
            [Row("content", t.id, False, e) for t in catalog.topics.values() for e in t.examples],
        )
        print(f"sanity (content examples against themselves, not a headline): top-1 {pct(sanity['top1_rate'])}, answered right {pct(sanity['answered_correct_rate'])}")
        print(f"content 5-fold cross-validation, rank-1 of held-out examples: {pct(content_cv_rank1(catalog))}")

    if not args.no_scaling:
        print()
        for size in (len(catalog.topics), 2000):
            cat = catalog if size == len(catalog.topics) else synthetic_catalog(catalog, size)
            n_ex = sum(len(t.examples) + 1 for t in cat.topics.values())
            gc.collect()
            base_rss = rss_mb()
            t = time.perf_counter()
            matcher = Matcher(cat)
            build = (time.perf_counter() - t) * 1000
            grown = rss_mb() - base_rss
            p50, p99 = latency(matcher_predict(matcher), queries)
            del matcher
            gc.collect()
            tracemalloc.start()
            matcher = Matcher(cat)
            held = tracemalloc.get_traced_memory()[0] / 2**20
            tracemalloc.stop()
            line = (
                f"scaling: {size:>5} entries ({n_ex} documents): matcher build {build:.0f} ms, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                f"index held {held:.1f} MB (ΔRSS {grown:.1f} MB)"
            )
            if size != len(catalog.topics):
                b = WRatioBaseline(cat, True, thresholds[True])
                bp50, bp99 = latency(b.predict, queries, rounds=1)
                line += f"; wratio-folded p50 {bp50:.2f} ms, p99 {bp99:.2f} ms"
            print(line)
            del matcher
    print(f"\nprocess RSS at the end: {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
