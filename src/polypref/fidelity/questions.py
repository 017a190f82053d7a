"""The fidelity check's questions: which topics it asks, their wording and options as a chat request (the
survey templates, replaceable by the user's folder), and the config's topics checked against the spec."""

from __future__ import annotations

from collections.abc import Sequence

from polypref import prompts
from polypref.config import BuildConfig
from polypref.errors import ConfigError
from polypref.population.spec import SurveySpec

SYSTEM_TEMPLATE = "survey_system.j2"
QUESTION_TEMPLATE = "survey_question.j2"
TEMPLATES = (SYSTEM_TEMPLATE, QUESTION_TEMPLATE)


def checked_topics(spec: SurveySpec, topics: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(topics) if topics else tuple(spec.attitudes.items)


def question_text(spec: SurveySpec, topic: str, templates: str | None = None) -> str:
    """A topic's survey question and its options, as the user message asks them (``templates``: the user's
    folder, judge.templates, whose survey_question.j2 replaces the shipped one)."""
    template = prompts.template(QUESTION_TEMPLATE, templates)
    return template.render(question=spec.question(topic), options=spec.scale(topic))


def question_messages(question: str, portrayal: str | None, templates: str | None = None) -> list[dict[str, str]]:
    """The chat request for one survey question (``question_text``): a system message with the persona (none for
    the persona-free baseline), then the question and its options."""
    messages = [{"role": "user", "content": question}]
    if portrayal:
        system = prompts.template(SYSTEM_TEMPLATE, templates).render(persona=portrayal)
        messages.insert(0, {"role": "system", "content": system})
    return messages


def check_topics(config: BuildConfig, spec: SurveySpec, source: str) -> None:
    unknown = sorted(set(config.fidelity.topics or ()) - set(spec.attitudes.items))
    if unknown:
        raise ConfigError(
            source, [("fidelity.topics", f"unknown topics {unknown}; the spec's: {sorted(spec.attitudes.items)}")]
        )
