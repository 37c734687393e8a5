"""Match a free-text question to an FAQ topic, or decide not to answer.

Every FAQ example (and title) is a small document. A query is scored against all of them on the
folded form (no diacritics) with several signals, the best example of each topic gives the topic's
score, and calibrated signals decide between answering, offering choices, asking back and saying
"I don't know". How each part was chosen, and what it measures, is in BENCHMARKS.md.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
from rapidfuzz import fuzz, process

from bot.catalog import Catalog
from bot.normalize import Normalized, is_syllable, normalize
from bot.question import Part, QuestionFinder, Reading


class Decision(StrEnum):
    ANSWER = "answer"
    CHOOSE = "choose"
    ASK_BACK = "ask_back"
    ABSTAIN = "abstain"


@dataclass(frozen=True, slots=True)
class Candidate:
    topic: str
    score: float


@dataclass(frozen=True, slots=True)
class Match:
    """The matcher's verdict: what to do, and the ranked candidates behind it."""

    decision: Decision
    candidates: tuple[Candidate, ...] = ()
    term: str = ""
    # Another question the message asks, about another topic, to offer beside the answer.
    also: tuple[Candidate, ...] = ()
    long: bool = False  # the message was read part by part (a story and a question)

    @property
    def topic(self) -> str | None:
        return self.candidates[0].topic if self.decision is Decision.ANSWER else None

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0


# --- Scoring --------------------------------------------------------------------------------------

K1, B = 1.2, 0.75  # BM25
REPAIR_CUTOFF = 80  # rapidfuzz ratio above which an unknown word is read as a FAQ word
NB_ALPHA = 0.1  # naive Bayes smoothing


@dataclass(frozen=True, slots=True)
class Weights:
    """How the signals add up to a topic's ranking score.

    Chosen on the development sets (dev, dev2) and on 5-fold cross-validation over the content's own
    examples (BENCHMARKS.md has the figures); example-level BM25, character trigrams, a softmax
    classifier and query likelihood were measured too and left out: they did not improve them.
    Multinomial naive Bayes (`nb`, session 3) did, on the long development set and the content CV."""

    topic: float = 1.0  # BM25 against the topic's examples taken together, over the query's own weight
    overlap: float = 0.0  # idf-weighted F1 of shared syllables and pairs with the topic's best example
    marks: float = 0.1  # share of the query's marked syllables (with diacritics) found as typed
    answer: float = 0.3  # BM25 against the topic's answer text (what the topic covers, in other words)
    # A message of at least `long_words` words is read part by part (bot/question.py): the parts that
    # ask weigh 1, the story around them `context`.
    context: float = 0.5
    long_words: int = 20
    nb: float = 0.1  # naive Bayes log-likelihood per unit of query weight, relative to its best topic
    lsa_dims: int = 64  # dimensions of the latent semantic vectors (0: none)
    lsa: float = 0.0  # weight of the LSA cosine in the ranking, relative to its best topic
    lsa_power: int = 1  # power iterations of the randomized SVD


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the calibrated probabilities turn into decisions."""

    answer: float = 0.725  # answer when P(the top topic is right) is at least this
    # answer only when P(the question is ours) is at least this; offer choices (or ask back) from `offer` on
    choose: float = 0.8
    # the same for long messages (at least Weights.long_words words), with models of their own
    answer_long: float = 0.475
    choose_long: float = 0.625
    # a long message may be offered choices at a lower P(ours) than it may be answered (None: choose_long)
    offer_long: float | None = None
    # the same for short messages (session 6): answering asks more of P(ours) than offering choices (None: choose)
    offer: float | None = 0.3
    max_choices: int = 3
    choice_ratio: float = 0.7  # further choices must score at least this share of the top one
    ask_back_words: int = 1  # a query of this many typed words or fewer is asked back


# Logistic models over Signals.features: (bias, {feature: weight}).
# Fitted by `python bench/faq.py --fit` on the dev split, the two calibration files and held-out
# content examples. ANSWER_MODEL gives P(the top topic is right), SCOPE_MODEL P(the question is ours).
# Session 6 refitted the short models (scope: lead_neighbour, procedure, lsa_cos; fitted also on dev2 and
# headlines_dev's short questions; answer and choose/offer thresholds under a 0.015 wrong ceiling) and, on the
# session's content, the LONG_ ones (session 5's features, long wrong ceiling 0.0275). Session 7 refitted all four on
# its content, the short ones also on dev3 and under a 0.0125 wrong ceiling. BENCHMARKS.md.
ANSWER_MODEL: tuple[float, dict[str, float]] = (-7.087, {'score': 4.641, 'margin': 2.109, 'ratio': 0.073, 'coverage': 4.283, 'unknown': -0.305, 'overlap': 3.278, 'nb_agree': 0.915, 'nb_margin': 1.752})
LONG_ANSWER_MODEL: tuple[float, dict[str, float]] = (-4.898, {'ratio': -0.524, 'third': -2.171, 'coverage': 4.381, 'nb_margin': 0.882, 'lsa_margin': 1.389, 'lsa_cos': 5.567})
LONG_SCOPE_MODEL: tuple[float, dict[str, float]] = (-7.74, {'score': 3.53, 'coverage': 4.098, 'unknown': -1.241, 'overlap': 2.786, 'recall': 2.305, 'log_words': 0.986, 'ours': 1.466, 'neighbour': -0.953, 'foreign': -0.385, 'balance': 1.824, 'ask_ours': 0.328, 'ask_neighbour': -2.045, 'ask_foreign': -0.491, 'ask_balance': -0.263})
SCOPE_MODEL: tuple[float, dict[str, float]] = (-11.428, {'score': 4.271, 'coverage': 4.35, 'unknown': 0.057, 'overlap': 2.884, 'recall': 1.565, 'log_words': 1.921, 'ours': 0.648, 'neighbour': -3.152, 'foreign': 0.509, 'lead_neighbour': -2.573, 'procedure': 2.283, 'lsa_cos': 3.628})

Model = tuple[float, dict[str, float]]


@dataclass(frozen=True, slots=True)
class Models:
    """The decision models a matcher uses (the fitted ones above unless a benchmark judges others)."""

    answer: Model = ANSWER_MODEL
    scope: Model = SCOPE_MODEL
    answer_long: Model = LONG_ANSWER_MODEL
    scope_long: Model = LONG_SCOPE_MODEL


def _phrase_set(phrases) -> dict[int, set[tuple[str, ...]]]:
    by_len: dict[int, set[tuple[str, ...]]] = {}
    for phrase in phrases:
        toks = tuple(phrase.split())
        by_len.setdefault(len(toks), set()).add(toks)
    return by_len


def _mentions(folded: tuple[str, ...], phrases: dict[int, set[tuple[str, ...]]], firsts: dict[str, tuple[int, ...]]) -> bool:
    """Tell whether a listed phrase occurs in `folded`; only positions where some phrase starts are tried."""
    return any(folded[i : i + n] in phrases[n] for i, t in enumerate(folded) if t in firsts for n in firsts[t])


def _count_mentions(folded: tuple[str, ...], phrases: dict[int, set[tuple[str, ...]]], firsts: dict[str, tuple[int, ...]]) -> int:
    """How many different listed phrases occur in `folded`."""
    return len({folded[i : i + n] for i, t in enumerate(folded) if t in firsts for n in firsts[t] if folded[i : i + n] in phrases[n]})


def _first_at(folded: tuple[str, ...], phrases: dict[int, set[tuple[str, ...]]], firsts: dict[str, tuple[int, ...]]) -> int | None:
    """Where the first listed phrase of `folded` starts, or None."""
    for i, t in enumerate(folded):
        if t in firsts and any(folded[i : i + n] in phrases[n] for n in firsts[t]):
            return i
    return None


def _leads(folded: tuple[str, ...], first: tuple, then: tuple) -> bool | None:
    """Whether a phrase of `first` (phrases, firsts) comes before any phrase of `then` in `folded`;
    None when `first` names nothing there."""
    at = _first_at(folded, *first)
    if at is None:
        return None
    other = _first_at(folded, *then)
    return other is None or at < other


def _first_words(phrases: dict[int, set[tuple[str, ...]]]) -> dict[str, tuple[int, ...]]:
    """First word -> the lengths of the listed phrases that start with it."""
    firsts: dict[str, set[int]] = {}
    for n, group in phrases.items():
        for phrase in group:
            firsts.setdefault(phrase[0], set()).add(n)
    return {t: tuple(sorted(ns)) for t, ns in firsts.items()}


def _only_subject(folded: tuple[str, ...], ours: dict[int, set[tuple[str, ...]]], filler: frozenset[str]) -> str | None:
    """Return the subject when the query names one of ours and nothing else ("cccd", "căn cước", "vneid")."""
    rest = list(folded)
    found: str | None = None
    for n, group in sorted(ours.items(), reverse=True):
        i = 0
        while i + n <= len(rest):
            if tuple(rest[i : i + n]) in group:
                found = found or " ".join(rest[i : i + n])
                del rest[i : i + n]
            else:
                i += 1
    return found if found and all(t in filler for t in rest) else None


def _logistic(model: tuple[float, dict[str, float]], features: dict[str, float]) -> float:
    bias, weights = model
    z = bias + sum(w * features.get(name, 0.0) for name, w in weights.items())
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def features_of(folded: tuple[str, ...] | list[str]) -> list[str]:
    """Return syllables and adjacent syllable pairs of a folded token sequence."""
    tokens = list(folded)
    return tokens + [f"{a}_{b}" for a, b in zip(tokens, tokens[1:])]


def weighted_features(folded: tuple[str, ...], weights: tuple[float, ...]) -> dict[str, float]:
    """Syllables and adjacent pairs of a folded token sequence, each with its greatest weight (a pair
    weighs as its lighter syllable)."""
    out: dict[str, float] = {}
    for t, wt in zip(folded, weights):
        if out.get(t, -1.0) < wt:
            out[t] = wt
    for (a, wa), (b, wb) in zip(zip(folded, weights), zip(folded[1:], weights[1:])):
        pair, wt = f"{a}_{b}", min(wa, wb)
        if out.get(pair, -1.0) < wt:
            out[pair] = wt
    return out


def _bm25_idf(df: np.ndarray, n: int) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5))


class _Postings:
    """An inverted index from feature ids to (document, weight) lists, kept as flat arrays (CSR);
    a query's scores are one numpy bincount over the slices of its features."""

    def __init__(self, docs: list[dict[int, float]], n_keys: int):
        key_ids = np.fromiter((k for d in docs for k in d), dtype=np.int64)
        doc_ids = np.fromiter((i for i, d in enumerate(docs) for _ in d), dtype=np.int32)
        weights = np.fromiter((w for d in docs for w in d.values()), dtype=np.float32)
        order = np.argsort(key_ids, kind="stable")  # documents stay sorted within a feature
        self.n_docs = len(docs)
        self.docs = doc_ids[order]
        self.weights = weights[order]
        self.indptr = np.zeros(n_keys + 1, dtype=np.int64)
        np.cumsum(np.bincount(key_ids, minlength=n_keys), out=self.indptr[1:])

    def score(self, ids, query_weights=None) -> np.ndarray:
        """Sum the weights of the query's features per document (each times its weight in the query)."""
        if len(ids) == 0:
            return np.zeros(self.n_docs)
        keys = np.asarray(ids, dtype=np.int64)
        starts = self.indptr[keys]
        lengths = self.indptr[keys + 1] - starts
        total = int(lengths.sum())
        if not total:
            return np.zeros(self.n_docs)
        # positions of every posting of every feature, in one array
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        at = np.arange(total) + offsets
        weights = self.weights[at]
        if query_weights is not None:
            weights = weights * np.repeat(np.asarray(query_weights, dtype=np.float32), lengths)
        return np.bincount(self.docs[at], weights=weights, minlength=self.n_docs)


class _Lsa:
    """Latent semantic vectors trained from the content when the index is built (session 5, issue #14's
    "second signal"): a truncated SVD of the documents' tf-idf matrix (examples, titles and answers over
    syllables and pairs seen in at least two documents), by a randomized range finder on the sparse
    matrix (numpy only, no download). A query and each topic become unit vectors in `dims` dimensions;
    words that occur with a topic's words in the content pull towards it even when the topic never
    uses them."""

    def __init__(self, docs: list[dict[int, int]], doc_topic: np.ndarray, n_topics: int, n_keys: int, dims: int, seed: int = 0,
                 power: int = 1):
        sizes = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        all_keys = np.fromiter((k for d in docs for k in d), dtype=np.int64, count=int(sizes.sum()))
        counts = np.fromiter((c for d in docs for c in d.values()), dtype=np.float64, count=len(all_keys))
        all_rows = np.repeat(np.arange(len(docs)), sizes)
        df = np.bincount(all_keys, minlength=n_keys).astype(np.float64)
        n = len(docs)
        keep = df >= 2
        self.idf = np.where(keep, np.log(max(n, 1) / np.maximum(df, 1)), 0.0)
        used = keep[all_keys]
        rows, keys = all_rows[used], all_keys[used]
        vals = (1 + np.log(counts[used])) * self.idf[keys]
        norms = np.sqrt(np.bincount(rows, weights=vals * vals, minlength=n))
        vals = (vals / np.maximum(norms[rows], 1e-9)).astype(np.float32)
        kept = np.flatnonzero(keep)
        cols = np.searchsorted(kept, keys)  # columns numbered among the kept keys only
        m = len(kept)
        k = min(dims, n - 1, m - 1)
        self.vectors = np.zeros((n_keys, max(k, 0)), dtype=np.float32)
        self.topics = np.zeros((n_topics, max(k, 0)), dtype=np.float32)
        if k <= 0:
            return
        vals64 = vals.astype(np.float64)

        # Sparse products, one column at a time with bincount: no (non-zeros x r) temporaries (session 5:
        # building them with reduceat took most of the build on a busy machine).
        def x_times(a: np.ndarray) -> np.ndarray:  # X @ a, a: columns x r
            at = np.ascontiguousarray(a.T)
            return np.stack([np.bincount(rows, weights=vals64 * col[cols], minlength=n) for col in at], axis=1).astype(np.float32)

        def xt_times(a: np.ndarray) -> np.ndarray:  # X.T @ a, a: documents x r
            at = np.ascontiguousarray(a.T)
            return np.stack([np.bincount(cols, weights=vals64 * col[rows], minlength=m) for col in at], axis=1).astype(np.float32)

        # The dense products are small; einsum keeps them off the threaded BLAS, whose threads wait for a core
        # on a busy machine (a 74 x 74 product then took up to 85 ms instead of 0.3 ms).
        def orthonormal(y: np.ndarray) -> np.ndarray:  # an orthonormal basis of y's columns, from its small Gram matrix
            lam, u = np.linalg.eigh(np.einsum("ij,ik->jk", y, y, dtype=np.float64))
            good = lam > lam.max() * 1e-10
            return np.einsum("ij,jk->ik", y, (u[:, good] / np.sqrt(lam[good])).astype(np.float32))

        y = x_times(np.random.default_rng(seed).standard_normal((m, k + 10)).astype(np.float32))
        q = orthonormal(y)
        for _ in range(power):
            q = orthonormal(x_times(xt_times(q)))
        bt = xt_times(q)  # (Q.T X).T: columns x r
        lam, u = np.linalg.eigh(np.einsum("ij,ik->jk", bt, bt, dtype=np.float64))  # B B.T = U S^2 U.T; V = B.T U / S
        top = np.argsort(-lam)[:k]
        v = np.einsum("ij,jk->ik", bt, (u[:, top] / np.sqrt(np.maximum(lam[top], 1e-12))).astype(np.float32))
        self.vectors[kept] = v
        d = x_times(v)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        np.add.at(self.topics, doc_topic, d)
        self.topics /= np.maximum(np.linalg.norm(self.topics, axis=1, keepdims=True), 1e-9)

    def cosines(self, kids: np.ndarray, kw: np.ndarray) -> np.ndarray:
        """Cosine of the query (feature ids and weights) with every topic."""
        v = (kw * self.idf[kids]).astype(np.float32) @ self.vectors[kids]
        return (self.topics @ (v / max(float(np.linalg.norm(v)), 1e-9))).astype(np.float64)


class _Index:
    """Everything `match` needs, built at once so that a reload swaps it in one assignment.

    Features (syllables and syllable pairs) share one id space; the documents are the examples and
    titles (for the overlap features), each topic's examples together, and each topic's answer.
    """

    def __init__(self, catalog: Catalog, weights: Weights):
        self.abbreviations = dict(catalog.abbreviations)
        data = catalog.matching
        self.neighbours = _phrase_set(p for ps in data.neighbour_services.values() for p in ps)
        self.ours = _phrase_set(data.our_subjects)
        self.ours_firsts = _first_words(self.ours)
        # what the scope models read as ours: the subjects and what people do with them
        self.ours_read = _phrase_set((*data.our_subjects, *data.our_procedures))
        self.ours_read_firsts = _first_words(self.ours_read)
        self.neighbour_firsts = _first_words(self.neighbours)
        self.filler = data.subject_filler
        self.ask_back = data.ask_back
        self.synonyms = {tuple(v.split()): tuple(k.split()) for k, vs in data.synonyms.items() for v in vs}
        # first word of a variant -> the variant lengths starting with it, longest first
        starts: dict[str, set[int]] = {}
        for v in self.synonyms:
            starts.setdefault(v[0], set()).add(len(v))
        self.synonym_starts = {t: sorted(ns, reverse=True) for t, ns in starts.items()}
        # Variants are words people type ("scam", "vinaphone"): never "repair" them into FAQ words.
        self.variant_tokens = frozenset(t for v in self.synonyms for t in v)
        self.finder = QuestionFinder(
            data.question_cues, data.courtesy, weights.context, weights.long_words, data.question_endings, data.trailing_particles
        )
        self.topic_ids: list[str] = []  # topics with at least one usable text, in catalog order
        vocab: dict[str, int] = {}
        marks: dict[str, int] = {}

        def ids(feats: Counter[str]) -> dict[int, float]:
            return {vocab.setdefault(f, len(vocab)): c for f, c in feats.items()}

        doc_topic: list[int] = []
        doc_feats: list[dict[int, int]] = []
        doc_marked: list[set[int]] = []
        topic_feats: list[dict[int, float]] = []
        answer_feats: list[dict[int, int]] = []
        for topic in catalog.topics.values():
            together: Counter[str] = Counter()  # counts, weighted for the story parts of long examples
            ti = len(self.topic_ids)
            for text in (topic.title, *topic.examples):
                norm = normalize(text, self.abbreviations)
                if not norm.folded:
                    continue
                feats = Counter(features_of(self.expand(norm.folded)))
                doc_topic.append(ti)
                doc_feats.append(ids(feats))
                doc_marked.append({marks.setdefault(t, len(marks)) for t, f in zip(norm.tokens, norm.folded) if t != f})
                if norm.words >= weights.long_words:
                    # A long example counts in its topic as a long query is read: the story weighs less.
                    for part in self.finder.read(text).parts:
                        for f, c in Counter(features_of(self.expand(normalize(part.text, self.abbreviations).folded))).items():
                            together[f] += c * part.weight
                else:
                    together.update(feats)
            if together:
                self.topic_ids.append(topic.id)
                topic_feats.append(ids(together))
                answer_feats.append(ids(Counter(features_of(self.expand(normalize(topic.answer, self.abbreviations).folded)))))
        self.vocab = vocab
        self.mark_ids = marks
        n, nt, nv = len(doc_feats), len(topic_feats), len(vocab)
        self.n_docs = n
        self.doc_topic = np.asarray(doc_topic, dtype=np.int32)
        # Documents are grouped by topic, so a topic's best document is one reduceat away.
        self.starts = np.flatnonzero(np.r_[True, self.doc_topic[1:] != self.doc_topic[:-1]]) if n else np.zeros(0, int)
        self.ends = np.r_[self.starts[1:], n] if n else np.zeros(0, int)

        def df(docs: list[dict[int, int]] | list[set[int]], size: int) -> np.ndarray:
            flat = np.fromiter((k for d in docs for k in d), dtype=np.int64)
            return np.bincount(flat, minlength=size).astype(np.float64)

        # Examples and titles: idf-weighted overlap (precision/recall against the best example).
        doc_df = df(doc_feats, nv)
        self.known = doc_df > 0  # features seen in an example or title
        self.idf = np.where(self.known, _bm25_idf(doc_df, n), 0.0)
        self.unknown_idf = float(_bm25_idf(np.zeros(1), n)[0])
        self.doc_weight = np.asarray([sum(self.idf[f] for f in feats) for feats in doc_feats])
        self.overlap = _Postings([{f: self.idf[f] for f in feats} for feats in doc_feats], nv)

        def bm25(docs: list[dict[int, int]]) -> tuple[_Postings, np.ndarray]:
            idf = _bm25_idf(df(docs, nv), len(docs))
            avg = (sum(sum(d.values()) for d in docs) / len(docs)) if docs else 1.0
            weighted = []
            for feats in docs:
                norm_len = K1 * (1 - B + B * sum(feats.values()) / avg)
                weighted.append({f: idf[f] * tf * (K1 + 1) / (tf + norm_len) for f, tf in feats.items()})
            return _Postings(weighted, nv), idf

        # Each topic's examples together: words spread over several examples count.
        self.topic_bm25, self.topic_idf = bm25(topic_feats)
        self.topic_members = [np.fromiter(sorted(feats), dtype=np.int64, count=len(feats)) for feats in topic_feats]
        self.nt_unknown = float(_bm25_idf(np.zeros(1), nt)[0])
        # A second, learned signal: multinomial naive Bayes over the same features, trained on each
        # topic's examples at build time. log P(f|t) = log(alpha / (N_t + alpha V)) + log(1 + c(f,t) / alpha):
        # the first term depends on the topic only, the second is sparse (kept as postings).
        self.nb = _Postings([{f: math.log1p(c / NB_ALPHA) for f, c in feats.items()} for feats in topic_feats], nv)
        sizes = np.asarray([sum(feats.values()) for feats in topic_feats], dtype=np.float64)
        self.nb_prior = np.log(NB_ALPHA) - np.log(sizes + NB_ALPHA * nv) if nt else np.zeros(0)
        # Each topic's answer: the same subject in the editor's words.
        self.answer_bm25, self.answer_idf = bm25(answer_feats)
        # Syllables as typed with their marks: rewards "mất" over "mật" when the person used diacritics.
        self.mark_idf = _bm25_idf(df(doc_marked, len(marks)), n)
        self.marks = _Postings([{m: self.mark_idf[m] for m in marked} for marked in doc_marked], len(marks))
        self.lsa = _Lsa([*doc_feats, *answer_feats], np.r_[self.doc_topic, np.arange(nt, dtype=np.int32)], nt, nv, weights.lsa_dims,
                        power=weights.lsa_power) if weights.lsa_dims else None

        self.syllables = {f for f, i in vocab.items() if "_" not in f and self.known[i]}
        self.repair_vocabulary = sorted(s for s in self.syllables if len(s) >= 3 and s.isalpha())

    def expand(self, folded: tuple[str, ...], keep_variant: bool = True) -> tuple[str, ...]:
        """Follow every variant phrase ("khong nho mat khau") with its canonical phrase, longest first.

        With `keep_variant` false the canonical phrase replaces the variant instead (for reading a
        subject: "cmtnd" alone is "chung minh" alone)."""
        if not self.synonyms:
            return folded
        out: list[str] = []
        i = 0
        while i < len(folded):
            for n in self.synonym_starts.get(folded[i], ()):
                canonical = self.synonyms.get(folded[i : i + n])
                if canonical:
                    out += [*folded[i : i + n], *canonical] if keep_variant else canonical
                    i += n
                    break
            else:
                out.append(folded[i])
                i += 1
        return tuple(out)

    def repair(self, folded: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
        """Replace misspelt syllables with the closest FAQ syllable; return the tokens and how many."""
        out = []
        repaired = 0
        for tok in folded:
            # Only a token that cannot be a Vietnamese syllable is a typo: "dag" is, "chieu" (chiều,
            # chiếu) is a real word the FAQ does not use, and must stay unknown.
            if tok in self.syllables or tok in self.variant_tokens or len(tok) < 3 or not tok.isalpha() or is_syllable(tok):
                out.append(tok)
                continue
            best = process.extractOne(tok, self.repair_vocabulary, scorer=fuzz.ratio, score_cutoff=REPAIR_CUTOFF)
            if best:
                out.append(best[0])
                repaired += 1
            else:
                out.append(tok)
        return tuple(out), repaired


@dataclass(frozen=True, slots=True)
class _Query:
    norm: Normalized  # the message's tokens (all parts), as typed and folded
    typed: tuple[str, ...]  # folded, misspellings repaired
    folded: tuple[str, ...]  # and every synonym variant followed by its canonical phrase
    canonical: tuple[str, ...]  # every synonym variant replaced by its canonical phrase
    weights: tuple[float, ...]  # one per `folded` token
    repaired: int
    parts: int
    # the asking parts' tokens, as typed and as rewritten (parts apart: "." between them)
    asking_typed: tuple[str, ...] = ()
    asking: tuple[str, ...] = ()


@dataclass(slots=True)
class Signals:
    """What the matcher measured about one query: ranked topics and the features behind the decision."""

    norm: Normalized
    ranked: list[Candidate]
    features: dict[str, float] = field(default_factory=dict)
    # The query's tokens repaired and with every synonym variant replaced by its canonical phrase.
    canonical: tuple[str, ...] = ()


class Matcher:
    """An index over the FAQ examples; `match` is pure and takes about a millisecond."""

    def __init__(self, catalog: Catalog, thresholds: Thresholds | None = None, weights: Weights | None = None, models: Models | None = None):
        self.thresholds = thresholds or Thresholds()
        self.weights = weights or Weights()
        self.models = models or Models()
        self.reload(catalog)

    def deciding_with(self, thresholds: Thresholds, models: Models) -> "Matcher":
        """The same index with other decision thresholds and models (for judging refitted models)."""
        other = object.__new__(Matcher)
        other.thresholds, other.weights, other.models, other._index = thresholds, self.weights, models, self._index
        return other

    def reload(self, catalog: Catalog) -> None:
        """Rebuild the index from (possibly edited) content; queries in flight keep the old one."""
        self._index = _Index(catalog, self.weights)

    @property
    def abbreviations(self) -> dict[str, str]:
        return self._index.abbreviations

    @property
    def topic_ids(self) -> list[str]:
        return self._index.topic_ids

    def _read(self, text: str, reading: Reading | None) -> _Query:
        """Normalise a message, part by part when it is long: the asking parts weigh 1, the story less."""
        ix = self._index
        parts = reading.parts if reading else (Part(text, 1.0, True),)
        tokens: list[str] = []
        marked_folded: list[str] = []
        typed: list[str] = []
        folded: list[str] = []
        canonical: list[str] = []
        weights: list[float] = []
        asking_typed: list[str] = []
        asking: list[str] = []
        words = repaired = 0
        for part in parts:
            norm = normalize(part.text, ix.abbreviations)
            t, r = ix.repair(norm.folded)
            f = ix.expand(t)
            c = ix.expand(t, keep_variant=False)
            tokens += norm.tokens
            marked_folded += norm.folded
            typed += t
            folded += f
            canonical += c
            weights += [part.weight] * len(f)
            words += norm.words
            repaired += r
            if part.weight >= 1.0:
                asking_typed += (*t, ".")
                asking += (*c, ".")
        norm = Normalized(tuple(tokens), tuple(marked_folded), words)
        return _Query(norm, tuple(typed), tuple(folded), tuple(canonical), tuple(weights), repaired, len(parts), tuple(asking_typed), tuple(asking))

    def signals(self, text: str, whole: bool = False, reading: Reading | None = None) -> Signals:
        """Score every topic against `text` and compute the decision features.

        A long message is read part by part (bot/question.py): its asking sentences weigh fully,
        the story around them `Weights.context`; `whole` reads it as one part."""
        ix = self._index
        q = self._read(text, None if whole else reading or ix.finder.read(text))
        norm, typed, folded, canonical = q.norm, q.typed, q.folded, q.canonical
        if not norm.folded or not ix.n_docs:
            return Signals(norm, [])
        repaired = q.repaired
        qf = weighted_features(folded, q.weights)
        qids = np.fromiter((ix.vocab.get(f, -1) for f in qf), dtype=np.int64, count=len(qf))
        qw = np.fromiter(qf.values(), dtype=np.float64, count=len(qf))
        is_known = qids >= 0
        kids = qids[is_known]
        kw = qw[is_known]
        unknown_w = float(qw[~is_known].sum())
        qweight = float((kw * np.where(ix.known[kids], ix.idf[kids], ix.unknown_idf)).sum()) + unknown_w * ix.unknown_idf or 1.0
        w = self.weights

        shared = ix.overlap.score(kids, kw)
        precision = shared / np.maximum(ix.doc_weight, 1e-9)
        recall = shared / qweight
        overlap = np.where(shared > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-9), 0.0)
        doc_score = w.overlap * overlap
        marked = [ix.mark_ids.get(t) for t, f in zip(norm.tokens, norm.folded) if t != f]
        if w.marks and marked:
            mweight = sum(float(ix.mark_idf[m]) if m is not None else ix.unknown_idf for m in marked)
            doc_score = doc_score + w.marks * ix.marks.score([m for m in marked if m is not None]) / mweight
        topic_score = np.maximum.reduceat(doc_score, ix.starts)
        if w.topic:
            tweight = float((kw * ix.topic_idf[kids]).sum()) + unknown_w * ix.nt_unknown or 1.0
            topic_score = topic_score + w.topic * ix.topic_bm25.score(kids, kw) / ((K1 + 1) * tweight)
        if w.answer:
            aweight = float((kw * ix.answer_idf[kids]).sum()) + unknown_w * ix.nt_unknown or 1.0
            topic_score = topic_score + w.answer * ix.answer_bm25.score(kids, kw) / ((K1 + 1) * aweight)

        # Each signal is at most about 1; dividing by the weights keeps a topic's score in [0, 1].
        topic_score = topic_score / max(w.topic + w.overlap + w.marks + w.answer, 1e-9)
        matched = topic_score > 0
        # The learned signal: multinomial naive Bayes (log-likelihood per unit of query weight). It
        # moves the ranking a little (`Weights.nb`: never above the lexical score of the best topic)
        # and tells the decision models whether it agrees with the lexical ranking.
        qsum = max(float(kw.sum()), 1.0)
        nb = (ix.nb.score(kids, kw) + float(kw.sum()) * ix.nb_prior) / qsum
        nb_top = int(np.argmax(nb))
        if w.nb:
            topic_score = np.maximum(topic_score + w.nb * (nb - nb[nb_top]), 0.0)
        lsa = ix.lsa.cosines(kids, kw) if ix.lsa is not None and len(kids) else None
        if lsa is not None and w.lsa:
            topic_score = np.where(matched, np.maximum(topic_score + w.lsa * (lsa - lsa.max()), 1e-6), 0.0)
        if len(topic_score) > 10:
            head = np.argpartition(-topic_score, 9)[:10]
            order = head[np.argsort(-topic_score[head], kind="stable")]
        else:
            order = np.argsort(-topic_score, kind="stable")
        ranked = [Candidate(ix.topic_ids[i], round(float(topic_score[i]), 4)) for i in order if matched[i] and topic_score[i] > 0]
        if not ranked:
            return Signals(norm, [], {"unknown": 1.0, "words": float(norm.words)})
        top_i = int(order[0])
        nb_agree = 1.0 if nb_top == top_i else 0.0
        nb_margin = float(nb[nb_top] - np.partition(nb, -2)[-2]) if len(nb) > 1 else 0.0
        s1 = float(topic_score[order[0]])
        s2 = float(topic_score[order[1]]) if len(order) > 1 else 0.0
        # How much of the query's (idf-weighted) syllables the top topic's examples contain, and how
        # much no example contains at all.
        syllables = list(dict.fromkeys(folded))
        sid = np.fromiter((ix.vocab.get(t, -1) for t in syllables), dtype=np.int64, count=len(syllables))
        seen = sid >= 0
        seen[seen] = ix.known[sid[seen]]
        sw = np.fromiter((qf[t] for t in syllables), dtype=np.float64, count=len(syllables))
        sw = sw * np.where(seen, ix.idf[np.maximum(sid, 0)], ix.unknown_idf)
        total = float(sw.sum()) or 1.0
        members = ix.topic_members[top_i]
        at = np.minimum(np.searchsorted(members, sid), len(members) - 1)
        coverage = float(sw[seen & (members[at] == sid)].sum()) / total
        unknown = float(sw[~seen].sum()) / total
        # Read on the tokens as typed and as rewritten: an inserted canonical phrase may split a
        # listed phrase ("app ngan hang" -> "app ung dung ngan hang").
        # A long message names our subject also by what it does with it ("đổi thẻ", "tờ khai"); a short one
        # only by the subject itself (the short models were fitted so).
        long_words = norm.words >= w.long_words
        said, firsts = (ix.ours_read, ix.ours_read_firsts) if long_words else (ix.ours, ix.ours_firsts)
        ours = _mentions(typed, said, firsts) or _mentions(canonical, said, firsts)
        neighbour = _mentions(typed, ix.neighbours, ix.neighbour_firsts) or _mentions(canonical, ix.neighbours, ix.neighbour_firsts)
        # Session 6: what a short question names first is what it is about ("hộ chiếu gắn chip có lợi gì",
        # "đăng ký kết hôn cần mang cccd không" ask about the neighbouring service), and naming what people
        # do with the card ("đổi thẻ", "cấp lại", "tờ khai") marks a short question as ours too.
        lead = None
        if neighbour:
            lead = _leads(canonical, (ix.neighbours, ix.neighbour_firsts), (said, firsts))
            if lead is None:
                lead = _leads(typed, (ix.neighbours, ix.neighbour_firsts), (said, firsts))
        procedure = ours or _mentions(canonical, ix.ours_read, ix.ours_read_firsts) or _mentions(typed, ix.ours_read, ix.ours_read_firsts)
        best_doc = int(ix.starts[top_i]) + int(np.argmax(overlap[ix.starts[top_i] : ix.ends[top_i]]))
        feats = {
            "score": s1,
            "second": s2,
            "margin": s1 - s2,
            "ratio": s2 / s1 if s1 else 1.0,
            "overlap": float(overlap[best_doc]),
            "recall": float(recall[best_doc]),
            "coverage": coverage,
            "unknown": unknown,
            "repaired": repaired / len(typed),
            "words": float(norm.words),
            "log_words": math.log1p(norm.words),
            "marked": 1.0 if marked else 0.0,
            "ours": 1.0 if ours else 0.0,
            "neighbour": 1.0 if neighbour else 0.0,
            "foreign": 1.0 if neighbour and not ours else 0.0,
            "lead_neighbour": 1.0 if neighbour and (lead or lead is None or not ours) else 0.0,
            "procedure": 1.0 if procedure else 0.0,
            # how many of our subjects and procedures, against how many neighbouring services, it names
            "balance": math.log1p(_count_mentions(canonical, ix.ours_read, ix.ours_read_firsts))
            - math.log1p(_count_mentions(canonical, ix.neighbours, ix.neighbour_firsts)),
            "long": 1.0 if norm.words >= w.long_words else 0.0,
            "nb_agree": nb_agree,
            "nb_margin": nb_margin if nb_agree else 0.0,
            # a length-free view of the ranking (session 5): a long story lowers every topic's score alike,
            # so how the third topic compares with the first says more than the scores themselves
            "third": (float(topic_score[order[2]]) / s1 if len(order) > 2 and s1 else 1.0),
        }
        if lsa is not None:
            # the second, learned signal: does the topic closest in the latent space agree, and by how much
            others = np.delete(lsa, top_i)
            feats["lsa_agree"] = 1.0 if int(np.argmax(lsa)) == top_i else 0.0
            feats["lsa_margin"] = float(lsa[top_i] - others.max()) if len(others) else 0.0
            feats["lsa_cos"] = float(lsa[top_i])
        if long_words:
            # what the asking parts name: a long out-of-scope question often tells a story with our card in
            # it ("tôi đã có căn cước chip rồi") and asks about a neighbouring service
            a_ours = _count_mentions(q.asking, said, firsts) or _count_mentions(q.asking_typed, said, firsts)
            a_neigh = _count_mentions(q.asking, ix.neighbours, ix.neighbour_firsts) or _count_mentions(q.asking_typed, ix.neighbours, ix.neighbour_firsts)
            feats["ask_ours"] = 1.0 if a_ours else 0.0
            feats["ask_neighbour"] = 1.0 if a_neigh else 0.0
            feats["ask_foreign"] = 1.0 if a_neigh and not a_ours else 0.0
            feats["ask_balance"] = math.log1p(a_ours) - math.log1p(a_neigh)
        return Signals(norm, ranked, feats, canonical)

    def decide(self, sig: Signals, text: str = "") -> Match:
        """Turn signals into a decision."""
        th = self.thresholds
        ranked = sig.ranked
        if not ranked:
            return Match(Decision.ABSTAIN)
        top = ranked[0]
        choices = tuple(c for c in ranked[: th.max_choices] if c.score >= th.choice_ratio * top.score)
        long = sig.features.get("long", 0.0) > 0
        p_in = _logistic(self.models.scope_long if long else self.models.scope, sig.features)
        choose = th.choose_long if long else th.choose
        offer = th.offer_long if long else th.offer
        offer = choose if offer is None else min(choose, offer)
        ix = self._index
        subject = _only_subject(sig.canonical, ix.ours, ix.filler)
        if sig.norm.words <= th.ask_back_words or subject:
            # One typed word ("cccd", "vneid") is a subject, not a question: ask what about it,
            # offering the subject's most asked topics where the content names them.
            if subject in ix.ask_back:
                scores = {c.topic: c.score for c in ranked}
                offered = tuple(Candidate(t, scores.get(t, 0.0)) for t in ix.ask_back[subject] if t in ix.topic_ids)
                return Match(Decision.ASK_BACK, offered[: th.max_choices], term=text.strip())
            if p_in >= offer or sig.features.get("coverage", 0.0) >= 0.99:
                return Match(Decision.ASK_BACK, tuple(ranked[: th.max_choices]), term=text.strip())
            return Match(Decision.ABSTAIN, tuple(ranked[: th.max_choices]))
        p_ok = _logistic(self.models.answer_long if long else self.models.answer, sig.features)
        if p_ok >= (th.answer_long if long else th.answer) and p_in >= choose:
            return Match(Decision.ANSWER, tuple(ranked[: th.max_choices]))
        if p_in >= offer:
            return Match(Decision.CHOOSE, choices)
        return Match(Decision.ABSTAIN, tuple(ranked[: th.max_choices]))

    def rank(self, norm_or_text: Normalized | str) -> list[Candidate]:
        """Score every topic against a query, best first."""
        text = norm_or_text if isinstance(norm_or_text, str) else " ".join(norm_or_text.tokens)
        return self.signals(text).ranked

    def read(self, text: str) -> Reading:
        """Cut a message into weighted parts and find its questions (bot/question.py)."""
        return self._index.finder.read(text)

    def match(self, text: str) -> Match:
        """Decide whether to answer, offer choices, ask back or abstain.

        A long message that asks two things gets its main question answered (the topic the whole
        message points to) and the other offered, when that one alone would be answered or offered."""
        reading = self.read(text)
        sig = self.signals(text, reading=reading)
        m = self.decide(sig, text)
        if not sig.features.get("long"):
            return m
        m = replace(m, long=True)
        questions = reading.questions
        if m.decision is not Decision.ANSWER or len(questions) < 2:
            return m
        main = m.candidates[0].topic
        for question in questions:
            sub = self.decide(self.signals(question, whole=True), question)
            if sub.candidates and sub.decision in (Decision.ANSWER, Decision.CHOOSE) and sub.candidates[0].topic != main:
                return replace(m, also=sub.candidates[:1])
        return m


__all__ = ["Candidate", "Decision", "Match", "Matcher", "Models", "Signals", "Thresholds", "Weights"]
