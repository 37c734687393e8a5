"""Load the Vietnamese content (messages, steps, FAQ) from YAML and validate it."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

import yaml

from bot.normalize import fold, fold_key, has_diacritics, normalize
from bot.startup import say

CONTENT_DIR = Path(__file__).parent / "content"
MAX_ANSWER = 2000
# The first message of an answer carries the essentials; the rest waits behind "Xem thêm".
MAX_FIRST = 500
MAX_TITLE = 40
MIN_EXAMPLES = 6
LONG_EXAMPLES_FILE = "faq_examples_long.yaml"
MIN_LONG_EXAMPLES = 3  # per topic, when the file is there
MIN_LONG_WORDS = 15  # a long-style example tells a situation and asks: at least this many words
PORTAL_MARK = "dichvucong"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the content, with where it is."""

    file: str
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.message}"


@dataclass(frozen=True, slots=True)
class StepProblem:
    label: str
    topic: str


@dataclass(frozen=True, slots=True)
class Step:
    slug: str
    title: str
    text: str
    topic: str
    problems: tuple[StepProblem, ...]
    review_note: str = ""
    # What the law has changed since the letter, shown under the step as "Lưu ý: …", with its source.
    note: str = ""


@dataclass(frozen=True, slots=True)
class Topic:
    id: str
    title: str
    examples: tuple[str, ...]
    # The whole answer (first message and the rest): what `ask` prints and the matcher reads.
    answer: str
    source: str
    needs_review: bool
    review_note: str = ""
    see_also: tuple[str, ...] = ()
    file: str = ""
    # The source named to the resident ("Luật Căn cước 2023, Điều 26"), shown under the first message.
    cite: str = ""
    # What is uncertain and whom to ask, shown to the resident; only on answers that need review.
    caveat: str = ""
    # The first message's essentials (`answer:` in the YAML), and the rest, sent on "Xem thêm".
    lead: str = ""
    more: str = ""
    # Questions written the way careful askers write (situation, then question), from faq_examples_long.yaml;
    # they are also in `examples`, after the short ones.
    long_examples: tuple[str, ...] = ()
    # What the answer becomes when the law moves on a known day (a fee reduction ending), in date order:
    # (first day it applies, the topic as answered from that day). See `changes:` in SCHEMA.md.
    later: tuple[tuple[date, "Topic"], ...] = ()
    # Examples an admin accepted on the dashboard (unanswered questions proposed for this topic); they
    # are also in `examples`, last. Kept in the database, not in the files (see `with_added_examples`).
    added_examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MatchingData:
    """Folded phrases the matcher reads besides the FAQ (bot/content/matching.yaml)."""

    neighbour_services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    our_subjects: tuple[str, ...] = ()
    # what people do with our subjects ("đổi thẻ", "tờ khai", "đính kèm"): read like a subject by the
    # scope models, but never asked back on its own
    our_procedures: tuple[str, ...] = ()
    subject_filler: frozenset[str] = frozenset()
    ask_back: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # canonical phrase -> the variants people type instead (bot/content/synonyms.yaml)
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # phrases that mark the asking sentence of a long message, and courtesy phrases dropped from it
    question_cues: tuple[str, ...] = ()
    question_endings: frozenset[str] = frozenset()
    trailing_particles: frozenset[str] = frozenset()
    courtesy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    """A neighbouring service people ask about, and where it is done (services.yaml)."""

    name: str
    where: str


@dataclass(frozen=True)
class Catalog:
    """All content, validated; `problems` is empty for content the bot may run on."""

    messages: dict[str, str]
    steps: tuple[Step, ...]
    topics: dict[str, Topic]
    abbreviations: dict[str, str]
    contract: tuple[str, ...]
    matching: MatchingData = field(default_factory=MatchingData)
    keywords: dict[str, frozenset[str]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    step_index: dict[str, int] = field(default_factory=dict)
    # neighbour service group (matching.yaml) -> where that service is done
    services: dict[str, Service] = field(default_factory=dict)
    # Which letters the nine steps follow, shown on the first step.
    steps_intro: str = ""

    def msg(self, key: str, **values: Any) -> str:
        """Return the message under `key`, filled with `values`."""
        return self.messages[key].format(**values).strip()

    def topic_on(self, topic_id: str, when: datetime) -> Topic:
        """The topic as it must be answered at `when` (a Vietnamese calendar day), after any dated change."""
        topic = self.topics[topic_id]
        if not topic.later:
            return topic
        day = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(VIETNAM).date()
        for start, changed in topic.later:
            if start <= day:
                topic = changed
        return topic

    def first_part(self, topic: Topic) -> str:
        """The first message of an answer: the essentials, what is uncertain, and the source."""
        parts = [topic.lead or topic.answer, topic.caveat]
        if topic.cite and "faq_source" in self.messages:
            parts.append(self.msg("faq_source", cite=topic.cite.rstrip(".")))
        return "\n".join(p for p in parts if p)

    def step_text(self, step: Step) -> str:
        """A step as the resident reads it: which letters (on the first step), the step, and any "Lưu ý"."""
        parts = [step.text]
        if self.steps and step.slug == self.steps[0].slug and self.steps_intro:
            parts.insert(0, self.steps_intro)
        if step.note and "step_note" in self.messages:
            parts.append(self.msg("step_note", note=step.note))
        return "\n".join(parts)

    def step_number(self, slug: str) -> int:
        """Return the 1-based position of a step."""
        return self.step_index[slug] + 1


class ContentError(Exception):
    """Raised when content is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def read_problem(exc: Exception) -> str:
    """Why a content file could not be read, in Vietnamese, with the line and column of a YAML mistake."""
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        detail = getattr(exc, "problem", None) or ""
        # The parser's own words stay as a hint for whoever searches the error; the sentence is Vietnamese.
        detail = f" ({detail})" if detail else ""
        if mark is not None:
            return say("check_yaml_at", line=mark.line + 1, column=mark.column + 1, detail=detail)
        return say("check_yaml", detail=detail)
    if isinstance(exc, UnicodeDecodeError):
        return say("check_not_utf8")
    if isinstance(exc, FileNotFoundError):
        return say("check_no_file")
    return say("check_unreadable", reason=exc.strerror or exc if isinstance(exc, OSError) else exc)


def _read_yaml(path: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(Problem(path.name, "-", read_problem(exc)))
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(path.name, "-", say("check_top_mapping")))
        return {}
    return data


# Vietnam has kept UTC+7 all year since 1975: a law's "from 01/01/2027" is a day there.
VIETNAM = timezone(timedelta(hours=7), "ICT")
CHANGE_FIELDS = ("replace", "cite", "source", "caveat", "needs_review", "review_note")


def _changes(path: Path, tid: str, raw: Any, topic: Topic, problems: list[Problem]) -> tuple[tuple[date, Topic], ...]:
    """Read a topic's `changes:`: from a day on, replace sentences of its answer (and its source)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem(path.name, tid, say("check_changes_list")))
        return ()
    out: list[tuple[date, Topic]] = []
    current = topic
    for n, change in enumerate(raw, 1):
        where = f"changes #{n}"
        if not isinstance(change, dict):
            problems.append(Problem(path.name, tid, say("check_change_mapping", where=where)))
            continue
        start = change.get("from")
        if isinstance(start, str):
            try:
                start = date.fromisoformat(start)
            except ValueError:
                start = None
        if not isinstance(start, date) or isinstance(start, datetime):
            problems.append(Problem(path.name, tid, say("check_change_from", where=where)))
            continue
        if out and start <= out[-1][0]:
            problems.append(Problem(path.name, tid, say("check_change_order", where=where)))
            continue
        unknown = sorted(set(change) - {"from", *CHANGE_FIELDS})
        if unknown:
            problems.append(Problem(path.name, tid, say("check_change_keys", where=where, keys=", ".join(unknown))))
        lead, more = current.lead, current.more
        pairs = change.get("replace") or {}
        if not isinstance(pairs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
            problems.append(Problem(path.name, tid, say("check_change_replace", where=where)))
            pairs = {}
        for old, new in pairs.items():
            old, new = old.strip(), new.strip()
            found = lead.count(old) + more.count(old)
            if not old or found != 1:
                problems.append(Problem(path.name, tid, say("check_change_count", where=where, found=found, old=old[:60])))
                continue
            lead, more = lead.replace(old, new), more.replace(old, new)
        current = replace(
            current,
            lead=lead,
            more=more,
            answer="\n".join(filter(None, (lead, more))),
            cite=_text(change.get("cite")) or current.cite,
            source=_text(change.get("source")) or current.source,
            caveat=_text(change.get("caveat")) if "caveat" in change else current.caveat,
            needs_review=bool(change.get("needs_review", current.needs_review)),
            review_note=_text(change.get("review_note")) if "review_note" in change else current.review_note,
            later=(),
        )
        out.append((start, current))
    return tuple(out)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _load_topics(directory: Path, problems: list[Problem]) -> dict[str, Topic]:
    topics: dict[str, Topic] = {}
    files = sorted(p for p in directory.glob("faq_*.yaml") if p.name != LONG_EXAMPLES_FILE)
    if not files:
        problems.append(Problem("faq_*.yaml", "-", say("check_no_faq")))
    for path in files:
        entries = _read_yaml(path, problems).get("topics")
        if not isinstance(entries, list):
            problems.append(Problem(path.name, "-", say("check_topics_list")))
            continue
        for n, raw in enumerate(entries, 1):
            if not isinstance(raw, dict):
                problems.append(Problem(path.name, f"#{n}", say("check_entry_mapping")))
                continue
            tid = _text(raw.get("id")) or f"#{n}"
            examples = tuple(_text(e) for e in raw.get("examples") or () if isinstance(e, str))
            topic = Topic(
                id=tid,
                title=_text(raw.get("title")),
                examples=examples,
                answer="\n".join(filter(None, (_text(raw.get("answer")), _text(raw.get("more"))))),
                source=_text(raw.get("source")),
                needs_review=bool(raw.get("needs_review", False)),
                review_note=_text(raw.get("review_note")),
                see_also=tuple(str(s) for s in raw.get("see_also") or ()),
                file=path.name,
                cite=_text(raw.get("cite")),
                caveat=_text(raw.get("caveat")),
                lead=_text(raw.get("answer")),
                more=_text(raw.get("more")),
            )
            topic = replace(topic, later=_changes(path, tid, raw.get("changes"), topic, problems))
            if tid in topics:
                problems.append(Problem(path.name, tid, say("check_duplicate_id", file=topics[tid].file)))
                continue
            if "needs_review" not in raw:
                problems.append(Problem(path.name, tid, say("check_needs_review_flag")))
            topics[tid] = topic
    return topics


def _add_long_examples(directory: Path, topics: dict[str, Topic], problems: list[Problem]) -> dict[str, Topic]:
    """Read faq_examples_long.yaml (optional): long-style examples keyed by topic id, added to the topics."""
    path = directory / LONG_EXAMPLES_FILE
    if not path.exists():
        return topics
    name = path.name
    raw = _read_yaml(path, problems).get("examples")
    if not isinstance(raw, dict):
        problems.append(Problem(name, "examples", say("check_examples_mapping")))
        return topics
    out = dict(topics)
    for tid, examples in raw.items():
        tid = str(tid)
        if tid not in topics:
            problems.append(Problem(name, tid, say("check_unknown_topic")))
            continue
        if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
            problems.append(Problem(name, tid, say("check_examples_list")))
            continue
        topic = topics[tid]
        seen = {fold_key(e) for e in topic.examples}
        long: list[str] = []
        for example in (" ".join(e.split()) for e in examples):
            key = fold_key(example)
            if key in seen:
                problems.append(Problem(name, tid, say("check_example_repeated", example=example[:60])))
                continue
            seen.add(key)
            if len(example.split()) < MIN_LONG_WORDS:
                problems.append(Problem(name, tid, say("check_example_short", words=len(example.split()), min=MIN_LONG_WORDS, example=example[:60])))
            long.append(example)
        out[tid] = replace(topic, examples=topic.examples + tuple(long), long_examples=tuple(long))
    for tid, topic in out.items():
        if len(topic.long_examples) < MIN_LONG_EXAMPLES:
            problems.append(Problem(name, tid, say("check_long_examples", count=len(topic.long_examples), min=MIN_LONG_EXAMPLES)))
    return out


def _check_topic(t: Topic, problems: list[Problem]) -> None:
    def bad(message: str) -> None:
        problems.append(Problem(t.file, t.id, message))

    if not t.id.replace("_", "").isalnum() or not t.id.isascii() or t.id != t.id.lower():
        bad(say("check_id_chars"))
    if not t.title:
        bad(say("check_title_empty"))
    elif len(t.title) > MAX_TITLE:
        bad(say("check_title_long", length=len(t.title), max=MAX_TITLE))
    if not t.lead:
        bad(say("check_answer_empty"))
    elif len(t.lead) > MAX_ANSWER:
        bad(say("check_answer_long", length=len(t.lead), max=MAX_ANSWER))
    if not t.source:
        bad(say("check_source_empty"))
    if any(not e for e in t.examples):
        bad(say("check_example_empty"))
    if len(t.examples) < MIN_EXAMPLES:
        bad(say("check_examples_few", count=len(t.examples), min=MIN_EXAMPLES))
    if t.examples and not any(has_diacritics(e) for e in t.examples):
        bad(say("check_examples_no_accents"))
    if t.examples and all(has_diacritics(e) for e in t.examples):
        bad(say("check_examples_all_accents"))
    if len(t.more) > MAX_ANSWER:
        bad(say("check_more_long", length=len(t.more), max=MAX_ANSWER))
    if t.needs_review:
        if not t.review_note:
            bad(say("check_review_note_empty"))
        if not t.caveat:
            bad(say("check_review_caveat"))
    elif t.caveat:
        bad(say("check_caveat_unreviewed"))
    _check_cite(t, bad)


# A source a resident can read names the kind of document and its year: "Luật Căn cước 2023, Điều 26",
# "hướng dẫn của UBND huyện Như Thanh (Thanh Hóa) năm 2023". Seed ids are for officers only.
_CITE_KINDS = re.compile(r"\b(luật|nghị định|thông tư|hiến pháp|quyết định|hướng dẫn|văn bản|công văn|khuyến cáo)\b", re.I)
_CITE_YEAR = re.compile(r"\b(19|20)\d\d\b")


def _check_cite(t: Topic, bad) -> None:
    if not t.cite:
        bad(say("check_cite_missing"))
        return
    if "seed" in t.cite.lower():
        bad(say("check_cite_seed", cite=t.cite))
    elif not _CITE_KINDS.search(t.cite) or not _CITE_YEAR.search(t.cite):
        bad(say("check_cite_kind", cite=t.cite))
    elif re.search(r"\bluật căn cước\b", t.cite, re.I) and not re.search(r"\bđiều \d+", t.cite, re.I) and not t.needs_review:
        # An article nobody has confirmed stays unnamed, and the entry stays marked for review.
        bad(say("check_cite_article", cite=t.cite))


# One form of address for every resident: "anh/chị", the bot is "tôi". "bác sĩ" is a doctor, not an address.
_OTHER_ADDRESS = re.compile(r"\b(bạn|quý vị|bác(?!\s+sĩ))\b", re.I)


def _check_address(file: str, entry: str, text: str, problems: list[Problem]) -> None:
    found = _OTHER_ADDRESS.search(text)
    if found:
        start = max(0, found.start() - 20)
        problems.append(Problem(file, entry, say("check_address", word=found.group(0), around=text[start:found.end() + 20])))


def _load_steps(directory: Path, problems: list[Problem]) -> tuple[Step, ...]:
    data = _read_yaml(directory / "steps.yaml", problems)
    steps: list[Step] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.get("steps") or (), 1):
        if not isinstance(raw, dict):
            problems.append(Problem("steps.yaml", f"#{n}", say("check_step_mapping")))
            continue
        slug = _text(raw.get("slug")) or f"#{n}"
        step = Step(
            slug=slug,
            title=_text(raw.get("title")),
            text=_text(raw.get("text")),
            topic=_text(raw.get("topic")),
            problems=tuple(
                StepProblem(_text(p.get("label")), _text(p.get("topic")))
                for p in raw.get("problems") or ()
                if isinstance(p, dict)
            ),
            review_note=_text(raw.get("review_note")),
            note=_text(raw.get("note")),
        )
        if slug in seen:
            problems.append(Problem("steps.yaml", slug, say("check_slug_duplicate")))
        seen.add(slug)
        for name in ("title", "text", "topic"):
            if not getattr(step, name):
                problems.append(Problem("steps.yaml", slug, say("check_step_empty", name=name)))
        if any(not p.label for p in step.problems):
            problems.append(Problem("steps.yaml", slug, say("check_problem_label")))
        if any(not p.topic for p in step.problems):
            problems.append(Problem("steps.yaml", slug, say("check_problem_topic")))
        steps.append(step)
    if len(steps) != 9:
        problems.append(Problem("steps.yaml", "-", say("check_steps_count", count=len(steps))))
    return tuple(steps)


def _phrases(value: Any, where: str, problems: list[Problem], file: str = "matching.yaml") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(Problem(file, where, say("check_phrases_list")))
        return ()
    for phrase in value:
        if fold(phrase) != phrase or phrase != " ".join(phrase.split()):
            problems.append(Problem(file, where, say("check_phrase_folded", phrase=phrase)))
    return tuple(value)


def _load_services(directory: Path, groups: list[str] | tuple[str, ...], problems: list[Problem]) -> dict[str, Service]:
    """Read services.yaml: one entry, with a name and where it is done, for every neighbour group."""
    raw = _read_yaml(directory / "services.yaml", problems).get("services") or {}
    if not isinstance(raw, dict):
        problems.append(Problem("services.yaml", "services", say("check_services_mapping")))
        raw = {}
    services: dict[str, Service] = {}
    for key, entry in raw.items():
        entry = entry if isinstance(entry, dict) else {}
        service = Service(_text(entry.get("name")), _text(entry.get("where")))
        if not service.name or not service.where:
            problems.append(Problem("services.yaml", str(key), say("check_service_fields")))
        if str(key) not in groups:
            problems.append(Problem("services.yaml", str(key), say("check_service_unknown")))
        services[str(key)] = service
    for group in groups:
        if group not in services:
            problems.append(Problem("services.yaml", group, say("check_service_missing")))
    return services


def _load_matching(directory: Path, problems: list[Problem]) -> MatchingData:
    data = _read_yaml(directory / "matching.yaml", problems)
    services = data.get("neighbour_services") or {}
    if not isinstance(services, dict) or not services:
        problems.append(Problem("matching.yaml", "neighbour_services", say("check_neighbours_mapping")))
        services = {}
    endings = data.get("question_endings") or {}
    if not isinstance(endings, dict):
        problems.append(Problem("matching.yaml", "question_endings", say("check_question_endings")))
        endings = {}
    ask_back = data.get("ask_back") or {}
    if not isinstance(ask_back, dict):
        problems.append(Problem("matching.yaml", "ask_back", say("check_ask_back_mapping")))
        ask_back = {}
    return MatchingData(
        neighbour_services={str(k): _phrases(v, f"neighbour_services.{k}", problems) for k, v in services.items()},
        our_subjects=_phrases(data.get("our_subjects"), "our_subjects", problems),
        our_procedures=_phrases(data.get("our_procedures"), "our_procedures", problems),
        subject_filler=frozenset(_phrases(data.get("subject_filler"), "subject_filler", problems)),
        ask_back={str(k): tuple(str(t) for t in v or ()) for k, v in ask_back.items()},
        synonyms=_load_synonyms(directory, problems),
        question_cues=_phrases(data.get("question_cues"), "question_cues", problems),
        question_endings=frozenset(_phrases(endings.get("words"), "question_endings.words", problems)),
        trailing_particles=frozenset(_phrases(endings.get("particles"), "question_endings.particles", problems)),
        courtesy=_phrases(data.get("courtesy"), "courtesy", problems),
    )


def _load_synonyms(directory: Path, problems: list[Problem]) -> dict[str, tuple[str, ...]]:
    """Read synonyms.yaml (optional): folded canonical phrases and the variants typed instead."""
    path = directory / "synonyms.yaml"
    if not path.exists():
        return {}
    raw = _read_yaml(path, problems)
    if not raw:
        return {}
    raw = raw.get("synonyms")
    if not isinstance(raw, dict):
        problems.append(Problem(path.name, "synonyms", say("check_synonyms_mapping")))
        return {}
    synonyms: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for key, variants in raw.items():
        if not isinstance(key, str):
            problems.append(Problem(path.name, f"synonyms.{key}", say("check_synonym_key")))
            continue
        canonical = _phrases([key], f"synonyms.{key}", problems, path.name)
        phrases = _phrases(variants, f"synonyms.{key}", problems, path.name)
        if isinstance(variants, list) and not variants:
            problems.append(Problem(path.name, f"synonyms.{key}", say("check_synonym_empty")))
        if not canonical:
            continue
        for variant in phrases:
            if variant in owner:
                problems.append(Problem(path.name, f"synonyms.{key}", say("check_synonym_taken", variant=variant, owner=owner[variant])))
            owner[variant] = canonical[0]
        synonyms[canonical[0]] = phrases
    for variant, key in owner.items():
        # A variant that is itself a canonical phrase would chain one rewrite into another.
        if variant in synonyms:
            problems.append(Problem(path.name, f"synonyms.{key}", say("check_synonym_canonical", variant=variant)))
    return synonyms


def _check_synonyms_readable(synonyms: dict[str, tuple[str, ...]], abbreviations: dict[str, str], problems: list[Problem]) -> None:
    """Report phrases the matcher can never meet: it reads text with abbreviations expanded, punctuation gone."""
    for key, variants in synonyms.items():
        for phrase in (key, *variants):
            seen = " ".join(normalize(phrase, abbreviations).folded)
            if seen != phrase:
                problems.append(Problem("synonyms.yaml", f"synonyms.{key}", say("check_synonym_folded", phrase=phrase, seen=seen)))


KEYWORD_KINDS = ("menu", "greeting", "guide", "next", "back", "skip", "thanks", "goodbye", "ack", "how_to", "greeting_kin")
# Answers to a question the bot asked, a group a question: unique within their group, but they may
# repeat a keyword above ("rồi" answers "đã nộp được chưa?" and means "next" inside the guide).
ANSWER_GROUPS = (("outcome_yes", "outcome_not_yet", "outcome_problem"), ("confirm", "decline"), ("restart",), ("more",))


def _load_kinds(raw: Any, section: str, kinds: tuple[str, ...], problems: list[Problem]) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        problems.append(Problem("keywords.yaml", section, say("check_keywords_mapping")))
        raw = {}
    keywords: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for kind in kinds:
        if kind not in raw:
            problems.append(Problem("keywords.yaml", kind, say("check_keyword_missing")))
            continue
        phrases = frozenset(_phrases(raw[kind], kind, problems, "keywords.yaml"))
        for phrase in phrases:
            if phrase in owner:
                problems.append(Problem("keywords.yaml", kind, say("check_keyword_taken", phrase=phrase, owner=owner[phrase])))
            owner[phrase] = kind
        keywords[kind] = phrases
    return keywords


def _load_keywords(directory: Path, problems: list[Problem]) -> dict[str, frozenset[str]]:
    """Read keywords.yaml: steering kinds, answer kinds (prefixed "answer."), and "particles"."""
    data = _read_yaml(directory / "keywords.yaml", problems)
    keywords = _load_kinds(data.get("keywords") or {}, "keywords", KEYWORD_KINDS, problems)
    for group in ANSWER_GROUPS:
        answers = _load_kinds(data.get("answers") or {}, "answers", group, problems)
        keywords.update({f"answer.{kind}": phrases for kind, phrases in answers.items()})
    particles = data.get("particles")
    keywords["particles"] = frozenset(_phrases(particles, "particles", problems, "keywords.yaml")) if particles else frozenset()
    topics = data.get("guide_topics") or []
    if not isinstance(topics, list):
        problems.append(Problem("keywords.yaml", "guide_topics", say("check_guide_topics")))
        topics = []
    keywords["guide_topics"] = frozenset(str(t) for t in topics)
    return keywords


# Every message id the code sends, with the placeholders it fills in. A missing id or an unknown
# placeholder would only fail when a person reaches that message, so `content check` catches both.
MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split())
    for key, fields in {
        "welcome": "name", "menu_prompt": "", "menu_guide": "", "menu_resume": "k n", "menu_faq": "",
        "menu_portal": "", "menu_help": "", "menu_hamlet": "", "menu_back": "", "faq_prompt": "", "portal": "",
        "help": "", "step_header": "k n title", "step_next": "", "step_back": "", "step_stuck": "",
        "step_stuck_prompt": "k n", "step_return": "k n", "step_first": "", "resume_prompt": "k n",
        "resume_continue": "", "resume_restart": "", "outcome_prompt": "", "outcome_yes": "", "outcome_not_yet": "",
        "outcome_problem": "", "outcome_thanks_yes": "", "outcome_thanks_not_yet": "", "outcome_thanks_problem": "",
        "faq_choices_prompt": "", "faq_none_of_these": "", "faq_unknown": "", "faq_ask_back": "term example",
        "bad_input": "", "too_long": "", "stale_button": "", "hamlet_prompt": "",
        "hamlet_skip": "", "hamlet_set": "hamlet", "hamlet_not_found": "text", "hamlet_bad_code": "",
        "hamlet_none": "", "hamlet_skipped": "", "group_private_hint": "", "group_private_button": "",
        "group_hamlet_set": "hamlet", "group_hamlet_refused": "", "group_hamlet_usage": "", "group_only": "",
        "delete_prompt": "", "delete_yes": "", "delete_no": "", "delete_done": "", "delete_cancelled": "",
        "choices_hint": "", "not_text": "", "error": "", "console_intro": "", "default_name": "",
        "ask_unsure": "", "faq_more": "", "faq_source": "cite", "step_note": "note",
        "smalltalk_thanks": "", "smalltalk_goodbye": "", "smalltalk_ack": "", "out_of_scope": "",
        "out_of_scope_where": "service where", "group_private_how": "", "hamlet_offer": "hamlet",
        "command_start": "", "command_huongdan": "", "command_menu": "", "command_huynhac": "", "command_xoa": "",
        "command_cauhoi": "", "command_thon": "",
        "hamlet_offer_yes": "", "hamlet_offer_other": "", "hamlet_commune_prompt": "",
        "hamlet_page_prompt": "commune first last total", "hamlet_more": "", "hamlet_other_commune": "",
        "hamlet_several": "text",
    }.items()
}
REQUIRED_MESSAGES = tuple(MESSAGE_FIELDS)


def placeholder_problem(text: str, allowed: frozenset[str], phrase: Callable[..., str] | None = None) -> str | None:
    """What is wrong with a message's {placeholders} (None: nothing), in Vietnamese (operator.yaml's `check_*`,
    or `phrase(id, **values)`: operator.yaml checks itself with its own sentences)."""
    phrase = phrase or say
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return phrase("check_braces", error=exc)
    unknown = sorted(used - allowed)
    if unknown:
        known = ", ".join("{" + f + "}" for f in sorted(allowed)) or phrase("check_placeholders_none")
        return phrase("check_placeholders", unknown=", ".join("{" + u + "}" for u in unknown), known=known)
    return None


def _check_placeholders(key: str, text: str, problems: list[Problem]) -> None:
    problem = placeholder_problem(text, MESSAGE_FIELDS.get(key, frozenset()))
    if problem:
        problems.append(Problem("messages.yaml", key, problem))


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load content from `directory` (the shipped content by default) and validate it."""
    directory = Path(directory or CONTENT_DIR)
    problems: list[Problem] = []
    raw_messages = _read_yaml(directory / "messages.yaml", problems).get("messages") or {}
    messages = {str(k): _text(v) for k, v in raw_messages.items()} if isinstance(raw_messages, dict) else {}
    for key, text in messages.items():
        if not text:
            problems.append(Problem("messages.yaml", key, say("check_message_empty")))
        _check_placeholders(key, text, problems)
    for key in REQUIRED_MESSAGES:
        if key not in messages:
            problems.append(Problem("messages.yaml", key, say("check_message_missing")))
    steps = _load_steps(directory, problems)
    steps_intro = _text(_read_yaml(directory / "steps.yaml", []).get("intro"))
    topics = _load_topics(directory, problems)
    for key, text in messages.items():
        _check_address("messages.yaml", key, text, problems)
    _check_address("steps.yaml", "intro", steps_intro, problems)
    for step in steps:
        for text in (step.title, step.text, step.note, *(p.label for p in step.problems)):
            _check_address("steps.yaml", step.slug, text, problems)
    for topic in (v for t in topics.values() for v in (t, *(changed for _, changed in t.later))):
        found: list[Problem] = []
        _check_topic(topic, found)
        for text in (topic.title, topic.lead, topic.more, topic.caveat, topic.cite):
            _check_address(topic.file, topic.id, text, found)
        # A dated change is checked like its topic; what it shares with it is reported once.
        problems.extend(p for p in found if p not in problems)
    topics = _add_long_examples(directory, topics, problems)
    for topic in topics.values():
        for other in topic.see_also:
            if other not in topics:
                problems.append(Problem(topic.file, topic.id, say("check_see_also", topic=other)))
    for step in steps:
        for tid in [step.topic, *(p.topic for p in step.problems)]:
            if tid and tid not in topics:
                problems.append(Problem("steps.yaml", step.slug, say("check_points_nowhere", topic=tid)))
    contract = tuple(_read_yaml(directory / "topics_contract.yaml", problems).get("topics") or ())
    for tid in contract:
        if tid not in topics:
            problems.append(Problem("faq_*.yaml", tid, say("check_contract_missing")))
    matching = _load_matching(directory, problems)
    keywords = _load_keywords(directory, problems)
    for tid in keywords.get("guide_topics", ()):
        if tid not in topics:
            problems.append(Problem("keywords.yaml", "guide_topics", say("check_points_nowhere", topic=tid)))
    for subject, topic_ids in matching.ask_back.items():
        if subject not in matching.our_subjects:
            problems.append(Problem("matching.yaml", f"ask_back.{subject}", say("check_not_our_subject")))
        for tid in topic_ids:
            if tid not in topics:
                problems.append(Problem("matching.yaml", f"ask_back.{subject}", say("check_points_nowhere", topic=tid)))
    raw_abbr = _read_yaml(directory / "abbreviations.yaml", problems).get("abbreviations") or {}
    abbreviations = {str(k).lower(): str(v).lower() for k, v in raw_abbr.items() if v}
    _check_synonyms_readable(matching.synonyms, abbreviations, problems)
    services = _load_services(directory, tuple(matching.neighbour_services), problems)
    catalog = Catalog(
        messages=messages,
        steps=steps,
        topics=topics,
        abbreviations=abbreviations,
        contract=contract,
        matching=matching,
        keywords=keywords,
        problems=tuple(problems),
        step_index={s.slug: i for i, s in enumerate(steps)},
        services=services,
        steps_intro=steps_intro,
    )
    for topic in (v for t in topics.values() for v in (t, *(changed for _, changed in t.later))):
        first = catalog.first_part(topic)
        if topic.lead and len(first) > MAX_FIRST:
            problems.append(Problem(topic.file, topic.id, say("check_first_message_long", length=len(first), max=MAX_FIRST)))
    if len(problems) != len(catalog.problems):
        catalog = replace(catalog, problems=tuple(problems))
    return catalog


def with_added_examples(catalog: Catalog, added: dict[str, list[str]]) -> Catalog:
    """The catalog with examples accepted on the dashboard added to their topics (topic id -> texts).

    A text already an example of any topic (compared folded) is left out: it would only repeat one, or
    pull the matcher between two topics. Topics no longer in the content are skipped.
    """
    if not added:
        return catalog
    seen = {fold_key(e) for t in catalog.topics.values() for e in t.examples}
    topics = dict(catalog.topics)
    for tid, texts in added.items():
        topic = topics.get(tid)
        if topic is None:
            continue
        new = []
        for text in (" ".join(str(t).split()) for t in texts):
            key = fold_key(text)
            if text and key and key not in seen:
                seen.add(key)
                new.append(text)
        if new:
            topics[tid] = replace(topic, examples=topic.examples + tuple(new), added_examples=topic.added_examples + tuple(new))
    return replace(catalog, topics=topics)


def load_valid_catalog(directory: Path | None = None) -> Catalog:
    """Load content and raise ContentError unless it is valid."""
    catalog = load_catalog(directory)
    if catalog.problems:
        raise ContentError(catalog.problems)
    return catalog
