"""The JSON documents a build keeps in ``.polypref/``, typed: a finished shard's report (``shards/NNNNN.json``),
the build's summary (``summary.json``) and the judge its workers ran (``judge-info.json``). state.json's is
``build.state_file.StateFile``.

Each reads with ``from_json`` (ValueError when the document is not one: damaged, edited, or of another kind)
and writes with ``to_json``, which gives back the very dict earlier versions wrote, so the bytes on disk do not
change (``files.write_json`` sorts the keys). ``build.state`` is the one that reads and writes them; everything
else takes these objects from it and reads their attributes, never their keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pydantic import TypeAdapter, ValidationError

from polypref.files import WrittenFile
from polypref.judges.base import JudgeInfo


def _validated(adapter: TypeAdapter[Any], data: Any, kind: str) -> Any:
    """``data`` as the document ``adapter`` types, every field checked; ValueError naming ``kind`` if it is not."""
    try:
        return adapter.validate_python(data)
    except ValidationError as e:
        raise ValueError(f"not a {kind}: {e.errors()[0]['msg']}") from None


@dataclass
class ShardReport:
    """A finished shard's figures, kept beside its files as its completion marker."""

    index: int
    units: int
    preferences: int
    reasons: dict[str, int]
    # scored against the simulator's ground truth (zero for LLM judges): raw vs after filters
    valid: int = 0  # judgments with a valid verdict
    truth_valid: int = 0
    truth_correct: int = 0
    truth_kept: int = 0
    truth_kept_correct: int = 0
    named: int = 0  # valid verdicts naming a response (not tie): what the first-position rate divides
    first_position_valid: int = 0  # valid verdicts naming the first-shown response
    first_position_kept: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # invalid verdicts per error category
    retries: int = 0  # extra requests for invalid outputs
    not_asked: int = 0  # units no request was made for (a pair of identical texts)
    recovered: int = 0  # judgments that were valid only after a retry
    unanswered: int = 0  # units that never got an answer: not done, a rerun asks again for exactly these
    reused: int = 0  # units taken from earlier runs (a finished shard, or saved micro-batches)
    planned: int = 0  # units the budget allows (judge.samples per order); adaptive sampling judges fewer
    # (persona, pair)s by the number of samples judged (each sample: both orders); adaptive sampling varies it
    samples_per_pair: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)  # judgments per output constraint used (LLM judges)
    # per persona group: [preferences on pairs the source labels, of which the persona chose the source's pick]
    source_label: dict[str, list[int]] = field(default_factory=dict)
    # per config (judgments, preferences): the shard file's digest and rows as written; a file that no longer
    # matches is made again from the store. Empty in reports of older versions: those shards are made again too
    files: dict[str, WrittenFile] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.unanswered == 0

    @classmethod
    def from_json(cls, data: Any) -> ShardReport:
        """A stored report, every field's type checked; ValueError if it is not one."""
        return _validated(_SHARD_REPORT, data, "shard report")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_SHARD_REPORT = TypeAdapter(ShardReport)


@dataclass
class Summary:
    """A whole build's figures: what summary.json, the card, the CLI and Prefect's artifacts show. Written last
    by a build that finished. A config's field (``preferences``, ``weights``, ...) is its rows, None when the
    build did not make it; a summary of an older version lacks later fields, which read as their defaults.
    Nested figures keep the shape the card's template reads (plain dicts)."""

    run_id: str
    created_at: str  # ISO 8601, of the run
    fingerprint: str = ""
    # how much the build holds and asked for; a config's rows (None: not built)
    personas: int | None = None
    pairs: int | None = None
    prompts: int = 0
    judgments: int | None = None
    planned_judgments: int = 0
    preferences: int | None = None
    judge_requests: int = 0
    calls_per_kept: float | None = None
    samples_per_pair: dict[str, int] = field(default_factory=dict)
    adaptive: dict[str, Any] | None = None
    shards: int = 0
    # what the judgments came to
    reasons: dict[str, int] = field(default_factory=dict)  # judgments per filter outcome, most first
    judge: dict[str, Any] = field(default_factory=dict)  # the judge's public provenance (JudgeInfo)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    unanswered: int = 0
    reused_judgments: int = 0
    response_formats: dict[str, int] = field(default_factory=dict)
    recovered_by_retry: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    first_position_rate: dict[str, float | None] = field(default_factory=dict)
    requests_by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    item_source: dict[str, Any] | None = None
    source_label_agreement: dict[str, Any] | None = None
    ground_truth_accuracy: dict[str, float | None] | None = None
    # the configs made at the end, over the whole dataset
    weights: int | None = None
    personas_with_preferences: int = 0
    review: int | None = None
    review_reasons: dict[str, int] = field(default_factory=dict)
    distributions: int | None = None
    episodes: int | None = None
    map: int | None = None
    calibration: dict[str, Any] | None = None
    preference_map: dict[str, Any] = field(default_factory=dict)
    representatives: dict[str, Any] | None = None
    splits: dict[str, Any] | None = None  # the shares, and each config's rows per split
    personalization: dict[str, Any] | None = None
    # keys this version does not know (a later version's): kept, so a summary reads back as it was written
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self, config: str) -> int | None:
        """A config's rows (None: the build did not make it)."""
        value = getattr(self, config)
        return value if isinstance(value, int) else None

    def split_rows(self) -> dict[str, dict[str, int]] | None:
        """Rows per config and split, None in a summary of a version before splits."""
        return (self.splits or {}).get("rows")

    def split_shares(self) -> dict[str, float] | None:
        shares = (self.splits or {}).get("shares")
        return dict(shares) if isinstance(shares, dict) else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        """A stored summary (or one as ``to_json`` gave it), every known field's type checked; ValueError if it is
        not one."""
        if not isinstance(data, Mapping):
            raise ValueError("not a summary: not a JSON object")
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        return _validated(_SUMMARY, {k: v for k, v in data.items() if k in known} | {"extra": extra}, "summary")

    def to_json(self) -> dict[str, Any]:
        figures = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return figures | self.extra


_SUMMARY = TypeAdapter(Summary)


@dataclass
class JudgeRecord:
    """The judge the workers of a distributed build ran (the head runs none, and writes its provenance from this),
    and the run whose persona-free votes they finished."""

    run_id: str
    judge: JudgeInfo

    @classmethod
    def from_json(cls, data: Any) -> JudgeRecord:
        return _validated(_JUDGE_RECORD, data, "judge record")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_JUDGE_RECORD = TypeAdapter(JudgeRecord)
