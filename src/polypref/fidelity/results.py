"""The fidelity check's figures as dataclasses: scores against the survey's distributions (``Score``, ``Scores``),
answers held against each persona's own respondent's (``Match``, ``Matches``, ``Individual``), the excess over
the floor (``Excess``) and the whole report (``FidelityReport``), with their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Score:
    tvd: float | None  # None: no answers to compare (every request failed, or a group nobody answered for)
    alignment: float | None


@dataclass(frozen=True)
class Scores:
    overall: Score
    groups: dict[str, Score]

    def as_json(self) -> dict[str, Any]:
        return {"overall": asdict(self.overall), "groups": {g: asdict(s) for g, s in self.groups.items()}}


@dataclass(frozen=True)
class Match:
    """Answers held against each persona's own respondent's, over the questions the persona answered (and its
    respondent did), weighted as the distributions are: ``exact`` the share given the respondent's very option,
    ``distance`` the mean |option difference| / (k - 1) on the ordinal scale (0: the same, 1: opposite ends)."""

    exact: float | None  # None: no question to score
    distance: float | None
    questions: int = 0  # answers scored (questions x samples)
    # 95% interval of ``exact`` that the sample of personas allows (personas as clusters of their answers;
    # None: fewer than 2 personas, or a report saved before it was kept)
    exact_low: float | None = None
    exact_high: float | None = None


@dataclass(frozen=True)
class Matches:
    overall: Match
    groups: dict[str, Match]

    def as_json(self) -> dict[str, Any]:
        return {"overall": asdict(self.overall), "groups": {g: asdict(m) for g, m in self.groups.items()}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Matches:
        return Matches(Match(**data["overall"]), {g: Match(**m) for g, m in data["groups"].items()})


@dataclass(frozen=True)
class Individual:
    """Each persona's answer against its own respondent's, and three guesses scored on the same questions: what
    demographics alone predict (the group's most common answer among other respondents), the persona-free model's
    one answer per topic, and a uniformly random option (knowing nothing). Role-play that reads people, not just
    groups, beats the demographics-only guess."""

    personas: Matches
    demographics: Matches
    persona_free: Matches
    chance: Matches

    KINDS: ClassVar[tuple[str, ...]] = ("personas", "demographics", "persona_free", "chance")

    def as_json(self) -> dict[str, Any]:
        return {kind: getattr(self, kind).as_json() for kind in self.KINDS}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Individual:
        return Individual(**{kind: Matches.from_json(data[kind]) for kind in Individual.KINDS})


@dataclass(frozen=True)
class Excess:
    """The personas' TVD minus their floor's, overall and per group: the distance role-play adds on top of the
    sampling noise a perfect role-player would show (None where either figure is missing)."""

    overall: float | None
    groups: dict[str, float | None]


@dataclass(frozen=True)
class FidelityReport:
    judge: str  # backend and model that answered
    topics: tuple[str, ...]
    personas: int
    asked: int  # questions put to personas (the persona-free baseline's come on top)
    answered: int  # ... answered with one of the options; the rest are counted, not scored
    no_answer: int  # questions (baseline's included) whose requests got no answer at all: asked again next time
    personas_scores: Scores
    baseline: Scores  # the same judge without a persona
    floor: Scores  # the personas' own survey answers: what a perfect role-player scores
    group_personas: dict[str, int] = field(default_factory=dict)
    individual: Individual | None = None  # None: a report saved before individual figures were kept
    samples: int = 1  # answers drawn per question (the persona-free model's too)
    temperature: float | None = None  # ... at this temperature (None: one greedy answer)
    population: int | None = None  # personas in the population the asked ones were spread over (None: older report)

    @property
    def excess_tvd(self) -> Excess:
        return excess_tvd(self.personas_scores, self.floor)

    def as_json(self) -> dict[str, Any]:
        """The figures as ``polypref fidelity --json`` writes them (personas' scores at the top level; the excess
        is derived, written for readers and not read back)."""
        excess = self.excess_tvd
        return {
            **self.personas_scores.as_json(),
            "baseline": self.baseline.as_json(),
            "floor": self.floor.as_json(),
            "excess_tvd": {"overall": excess.overall, "groups": excess.groups},
            **({"individual": self.individual.as_json()} if self.individual is not None else {}),
            "counts": {
                "judge": self.judge,
                "topics": list(self.topics),
                "personas": self.personas,
                "asked": self.asked,
                "answered": self.answered,
                "no_answer": self.no_answer,
                "group_personas": self.group_personas,
                "samples": self.samples,
                "temperature": self.temperature,
                "population": self.population,
            },
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> FidelityReport:
        def scores(d: dict[str, Any]) -> Scores:
            return Scores(Score(**d["overall"]), {g: Score(**s) for g, s in d["groups"].items()})

        counts = data["counts"]
        return FidelityReport(
            judge=counts["judge"],
            topics=tuple(counts["topics"]),
            personas=counts["personas"],
            asked=counts["asked"],
            answered=counts["answered"],
            no_answer=counts.get("no_answer", 0),
            personas_scores=scores(data),
            baseline=scores(data["baseline"]),
            floor=scores(data["floor"]),
            group_personas=counts["group_personas"],
            individual=Individual.from_json(data["individual"]) if data.get("individual") else None,
            samples=counts.get("samples", 1),
            temperature=counts.get("temperature"),
            population=counts.get("population"),
        )


def excess_tvd(personas: Scores, floor: Scores) -> Excess:
    def minus(a: Score | None, b: Score | None) -> float | None:
        if a is None or b is None or a.tvd is None or b.tvd is None:
            return None
        return round(a.tvd - b.tvd, 6)

    return Excess(
        minus(personas.overall, floor.overall), {g: minus(s, floor.groups.get(g)) for g, s in personas.groups.items()}
    )
