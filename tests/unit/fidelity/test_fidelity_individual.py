"""Fidelity at the individual level: each persona's answer held against its own respondent's (exact match and
ordinal distance) beside a demographics-only guess, the persona-free model and chance; each group's TVD in
excess of its sampling floor, and the gate on that excess. Hand-worked figures on a tiny synthetic case through
the pure functions; the check itself with the simulator and a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest

from polypref import prompts
from polypref.build.fingerprint import data_settings
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.fidelity import FidelityReport, Score, Scores, check
from polypref.fidelity import report as fidelity_report
from polypref.fidelity.results import Match, Matches, excess_tvd
from polypref.fidelity.scoring import chance, demographic_answers, matches
from polypref.pipeline import fidelity as fidelity_run
from polypref.pipeline.fidelity import FidelityGateError
from polypref.population.spec import SurveySpec
from polypref.records import Persona
from tests.conftest import spec_dict
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

running = contextlib.contextmanager(serve)
SPEC = SurveySpec.model_validate({**spec_dict(), "path": "tiny.yaml"})  # t1, t2 on low / mid / high


def _persona(pid: str, group: str, answers: dict[str, str | None], weight: float = 1.0, rid: str = "") -> Persona:
    return Persona(pid, "tiny", rid or pid, 0, group, {}, answers, {}, weight, f"I am {pid}.")


# own answers on t1: north high, high, low; south mid. t2: n1 skipped it in the survey.
PERSONAS = [
    _persona("n1", "north", {"t1": "high", "t2": None}),
    _persona("n2", "north", {"t1": "high", "t2": "low"}),
    _persona("n3", "north", {"t1": "low", "t2": "low"}),
    _persona("s1", "south", {"t1": "mid", "t2": "mid"}),
]


def _point(match: Match) -> Match:
    """The figure without its interval (tested on its own in the hand-worked case)."""
    return dataclasses.replace(match, exact_low=None, exact_high=None)


def test_individual_figures_on_a_hand_worked_case():
    # n1 right, n2 one step off, n3 two steps off; s1 gave no option: left out. t2: n1 has no answer of its own
    # to compare with (left out), n2 right, n3 one step off, s1 unanswered.
    answers = {"t1": ["high", "mid", "high", None], "t2": ["high", "low", "mid", None]}
    figures = matches(answers, answers, PERSONAS, SPEC)
    assert _point(figures.overall) == Match(
        exact=round(2 / 5, 6), distance=round((0 + 0.5 + 1 + 0 + 0.5) / 5, 6), questions=5
    )
    # the interval three personas allow is wide: t(2) = 4.303 times se = sqrt(3/2 * (0.36 + 0.04 + 0.64)) / 5
    # (residuals from 0.4 summed per persona: n1 +0.6, n2 -0.4 + 0.6, n3 -0.8), clipped to 0-1
    assert (figures.overall.exact_low, figures.overall.exact_high) == (0.0, 1.0)
    assert figures.groups["north"] == figures.overall
    assert figures.groups["south"] == Match(None, None, 0)  # a group nobody answered for has no figure
    # one persona alone allows no interval
    # ten personas on one question, six right: share 0.6, residuals +0.4 x 6 and -0.6 x 4, so
    # se = sqrt(10/9 * (6 * 0.16 + 4 * 0.36)) / 10 and the interval 0.6 -/+ t(9) = 2.262 times it
    ten = [_persona(f"p{i}", "north", {"t1": "high"}) for i in range(10)]
    said = {"t1": ["high"] * 6 + ["low"] * 4}
    se = (10 / 9 * (6 * 0.16 + 4 * 0.36)) ** 0.5 / 10
    ten_figures = matches(said, said, ten, SPEC).overall
    assert ten_figures.exact == 0.6
    assert ten_figures.exact_low == pytest.approx(0.6 - 2.262 * se, abs=1e-6)
    assert ten_figures.exact_high == pytest.approx(0.6 + 2.262 * se, abs=1e-6)
    # personas drawn from one respondent answer alike: one cluster, so no interval from one respondent's copies
    copies = [_persona(f"c{i}", "north", {"t1": "high"}, rid="r") for i in range(10)]
    assert matches(said, said, copies, SPEC).overall.exact_low is None
    alone = {t: said[:1] for t, said in answers.items()}
    assert matches(alone, alone, PERSONAS[:1], SPEC).overall.exact_low is None

    # the persona-free model's one answer per topic, on the same five questions
    free = matches({"t1": ["mid"] * 4, "t2": ["low"] * 4}, answers, PERSONAS, SPEC)
    assert _point(free.overall) == Match(exact=0.4, distance=round((0.5 + 0.5 + 0.5 + 0 + 0) / 5, 6), questions=5)

    # chance: each option with probability 1/3, so exact 1/3; distance from high (or low) (2 + 1 + 0) / 3 / 2
    assert _point(chance(answers, PERSONAS, SPEC).overall) == Match(round(1 / 3, 6), 0.5, 5)

    # weighted as the distributions are: n3 (two steps off on t1, one on t2) weighs 3
    heavy = [*PERSONAS[:2], dataclasses.replace(PERSONAS[2], weight=3.0), PERSONAS[3]]
    weighted = matches(answers, answers, heavy, SPEC).overall
    assert _point(weighted) == Match(round(2 / 9, 6), round((0 + 0.5 + 3 * 1 + 0 + 3 * 0.5) / 9, 6), 5)


def _survey(rows: list[tuple[str, str, float, dict[str, str | None]]]) -> pl.DataFrame:
    """A respondents frame as population.survey.respondents gives it: (respondent, group, weight, answers)."""
    return pl.DataFrame(
        {
            "respondent_id": [r for r, _, _, _ in rows],
            "group": [g for _, g, _, _ in rows],
            "weight": [w for _, _, w, _ in rows],
            **{f"v:{t}": [a.get(t) for _, _, _, a in rows] for t in ("t1", "t2")},
        },
        schema_overrides={"v:t1": pl.String, "v:t2": pl.String},
    )


# the four personas' own respondents, one row each
SURVEY = _survey([(p.respondent_id, p.group, 1.0, p.attitudes) for p in PERSONAS])


def test_the_demographics_only_guess_is_the_groups_most_common_answer_among_other_respondents():
    guesses = demographic_answers(PERSONAS, SURVEY, SPEC, ["t1", "t2"])
    # n1: the others say high (n2) and low (n3): a tie, which goes to the earlier option; n3: high, high.
    # s1: no other respondent in the south: the survey's most common answer (high 2, low 1; s1's mid left out).
    assert guesses["t1"] == ["low", "low", "high", "high"]
    # t2: n1 low (n2, n3); n2 low (n3; n1 skipped it); s1 falls back to the survey's low (2; its own mid left out)
    assert guesses["t2"] == ["low", "low", "low", "low"]
    answers = {"t1": ["high", "mid", "high", None], "t2": ["high", "low", "mid", None]}
    figures = matches(guesses, answers, PERSONAS, SPEC).overall
    # t1: n1 low vs high, n2 low vs high, n3 high vs low; t2: n2 low = low, n3 low = low
    assert _point(figures) == Match(0.4, round((1 + 1 + 1 + 0 + 0) / 5, 6), 5)


def test_the_demographics_only_guess_reads_the_survey_not_the_other_personas():
    # three personas drawn from r1 and one from r2 in the north; the survey behind them has r4 and r5 saying mid
    draws = [
        *(_persona(f"a{i}", "north", {"t1": "high"}, rid="r1") for i in range(3)),
        _persona("b", "north", {"t1": "low"}, rid="r2"),
        *(_persona(f"c{i}", "south", {"t1": "mid"}, rid="r3") for i in range(3)),
    ]
    survey = _survey(
        [
            ("r1", "north", 1.0, {"t1": "high"}),
            ("r2", "north", 1.0, {"t1": "low"}),
            ("r3", "south", 1.0, {"t1": "mid"}),
            ("r4", "north", 1.0, {"t1": "mid"}),
            ("r5", "north", 1.0, {"t1": "mid"}),
        ]
    )
    guesses = demographic_answers(draws, survey, SPEC, ["t1"])["t1"]
    # a (r1): low 1, mid 2 among the others: mid; the other personas alone (b, low) would say low. b: mid.
    assert guesses[:4] == ["mid"] * 4
    # the south holds only r3: the survey's most common answer without r3 (mid 2, high 1, low 1)
    assert guesses[4:] == ["mid"] * 3
    # each respondent counts once, by its survey weight, however many personas were drawn from it
    heavy = _survey(
        [
            ("r1", "north", 4.0, {"t1": "high"}),
            *[
                (r, g, 1.0, {"t1": a})
                for r, g, a in [
                    ("r2", "north", "low"),
                    ("r3", "south", "mid"),
                    ("r4", "north", "mid"),
                    ("r5", "north", "mid"),
                ]
            ],
        ]
    )
    assert demographic_answers(draws, heavy, SPEC, ["t1"])["t1"][3] == "high"  # b: r1's weight 4 over mid's 2
    assert demographic_answers(draws[:1], heavy, SPEC, ["t1"])["t1"] == ["mid"]  # r1 never counts for itself
    # nobody in the survey answered: no guess, and then no figure for it
    blank = [_persona("x", "north", {"t1": None}), _persona("y", "north", {"t1": None})]
    nobody = _survey([("x", "north", 1.0, {"t1": None}), ("y", "north", 1.0, {"t1": None})])
    assert demographic_answers(blank, nobody, SPEC, ["t1"]) == {"t1": [None, None]}


def test_excess_is_the_tvd_above_the_floor_per_group_and_overall():
    personas = Scores(
        Score(0.30, 0.8), {"north": Score(0.25, 0.9), "south": Score(0.5, 0.7), "east": Score(None, None)}
    )
    floor = Scores(Score(0.05, 0.95), {"north": Score(0.20, 0.9), "south": Score(0.1, 0.9), "east": Score(0.3, 0.8)})
    excess = excess_tvd(personas, floor)
    assert excess.overall == pytest.approx(0.25)
    assert excess.groups == {"north": pytest.approx(0.05), "south": pytest.approx(0.4), "east": None}


def test_simulated_check_gives_each_persona_its_respondents_answer(tiny_population, tmp_path):
    population, frame = tiny_population
    report = check(population, frame, load_config().judge, 0, tmp_path)
    individual = report.individual
    assert individual is not None
    assert _point(individual.personas.overall) == Match(1.0, 0.0, report.answered)  # by construction: cannot fail
    assert all(m.exact == 1.0 for m in individual.personas.groups.values())
    assert individual.chance.overall.exact == round(1 / 3, 6)  # every scale here has 3 options
    # north leans high, south low: the group's most common answer beats the population's on these personas
    assert individual.demographics.overall.exact > individual.persona_free.overall.exact
    assert report.excess_tvd.overall == 0.0 and set(report.excess_tvd.groups.values()) == {0.0}
    lines = fidelity_report.describe(report)
    assert any("demographics only:" in line and "exact" in line for line in lines)
    assert any("TVD above perfect role-play: +0.000" in line for line in lines)
    assert "| nothing (random) | 0.333 |" in fidelity_report.markdown(report)
    # the --json shape, and back
    data = json.loads(json.dumps(report.as_json()))
    assert set(data["individual"]) == {"personas", "demographics", "persona_free", "chance"}
    assert data["excess_tvd"]["overall"] == 0.0
    assert FidelityReport.from_json(data) == report


def test_an_old_saved_report_without_individual_figures_still_loads_and_shows(tiny_population, tmp_path):
    population, frame = tiny_population
    report = check(population, frame, load_config().judge, 0, tmp_path, personas=30)
    old = report.as_json()
    del old["individual"], old["excess_tvd"]  # what a report saved before them holds
    loaded = FidelityReport.from_json(json.loads(json.dumps(old)))
    assert loaded == dataclasses.replace(report, individual=None)
    assert loaded.excess_tvd == report.excess_tvd  # derived from the saved figures
    assert not any("own respondent" in line for line in fidelity_report.describe(loaded))
    card = fidelity_report.as_card(loaded)
    assert card is not None and card["individual"] is None and card["excess_tvd"] == "+0.000"
    # the card's Fidelity section renders both, naming the individual figures only where the report has them
    assert "exact match" not in _fidelity_section(loaded, simulated=True)
    section = _fidelity_section(report, simulated=True)
    assert "| personas | 1.000 | 0.000 |" in section and "cannot fail" in section
    assert "cannot fail" not in _fidelity_section(report, simulated=False)


def _fidelity_section(report: FidelityReport, simulated: bool) -> str:
    """The card template's Fidelity section, rendered as the card renders it."""
    text = (Path(__file__).parents[3] / "schemas" / "dataset_card.md.j2").read_text()
    start = text.index("{%- if fidelity %}")
    end = text.index("{%- endif %}", text.index("</details>", start)) + len("{%- endif %}")
    template = prompts.environment("schemas").from_string(text[start:end])
    return template.render(fidelity=fidelity_report.as_card(report), summary={"judge": {"simulated": simulated}})


def _constant_report(tiny_population, tmp_path: Path) -> FidelityReport:
    """A model that answers every survey question with its first option, persona or not."""
    population, frame = tiny_population
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        judge = load_config(overrides=judge_settings(server)).judge
        return check(population, frame, judge, 0, tmp_path, personas=40)


def _gate_config(*settings: str):
    return load_config(overrides=["fidelity.gate=true", "fidelity.max_tvd=1", *settings])


def test_the_gate_stops_on_the_excess_over_the_floor_and_names_the_groups_past_it(tiny_population, tmp_path):
    report = _constant_report(tiny_population, tmp_path)
    individual = report.individual
    assert individual is not None and report.answered == 80
    # every persona said what the model says without one: the same individual figures
    assert individual.personas == individual.persona_free
    excess = report.excess_tvd
    assert excess.overall is not None and excess.overall > 0.3
    fidelity_run.gate(report, _gate_config())  # max_tvd 1 and no excess threshold: it passes
    fidelity_run.gate(report, _gate_config(f"fidelity.max_excess_tvd={excess.overall}"))  # not above it
    with pytest.raises(FidelityGateError) as stopped:
        fidelity_run.gate(report, _gate_config("fidelity.max_excess_tvd=0.3"))
    message = str(stopped.value)
    assert "fidelity.max_excess_tvd 0.3" in message and f"{excess.overall:.3f} above perfect role-play" in message
    past = [g for g, e in excess.groups.items() if e is not None and e > 0.3]
    assert past and all(g in message for g in past)
    assert all(g not in message for g, e in excess.groups.items() if e is not None and e <= 0.3)
    # the raw TVD gate is kept as it was without an excess threshold, and is off with one (the excess replaces it)
    with pytest.raises(FidelityGateError, match=r"fidelity\.max_tvd 0\.2"):
        fidelity_run.gate(report, load_config(overrides=["fidelity.gate=true"]))
    fidelity_run.gate(report, load_config(overrides=["fidelity.gate=true", "fidelity.max_excess_tvd=0.9"]))


def test_role_play_at_its_floor_passes_an_excess_gate_of_zero(tiny_population, tmp_path):
    population, frame = tiny_population
    # 12 personas: their groups' floors are far from the survey, but role-play adds nothing on top
    report = check(population, frame, load_config().judge, 0, tmp_path, personas=12)
    assert max(s.tvd or 0.0 for s in report.floor.groups.values()) > 0.2
    fidelity_run.gate(report, _gate_config("fidelity.max_excess_tvd=0"))


def test_max_excess_tvd_loads_checks_its_range_and_leaves_the_data_alone(tmp_path):
    assert load_config().fidelity.max_excess_tvd is None
    assert load_config(overrides=["fidelity.max_excess_tvd=0.05"]).fidelity.max_excess_tvd == 0.05
    with pytest.raises(ConfigError) as bad:
        load_config(overrides=["fidelity.max_excess_tvd=1.5"])
    assert bad.value.problems[0][0] == "fidelity.max_excess_tvd"
    # a gate threshold changes no row: a build that sets it resumes the same shards
    assert data_settings(load_config(overrides=["fidelity.max_excess_tvd=0.05"])) == data_settings(load_config())


def test_matches_and_reports_round_trip_through_json():
    figures = Matches(Match(0.5, 0.25, 4), {"north": Match(0.5, 0.25, 4), "south": Match(None, None, 0)})
    assert Matches.from_json(json.loads(json.dumps(figures.as_json()))) == figures
