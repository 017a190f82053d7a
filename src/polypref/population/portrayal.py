"""Portrayal templates: the text that tells a judge who it is, rendered from a persona's survey answers.

A spec names its template (``portrayal:``): a file at that path relative to the spec's folder (the user's own),
else a shipped template in prompts/. The template is loaded and checked when the spec is loaded, and rendered while
the population is sampled, so a missing file, a syntax error or a variable the template cannot have all stop the
build before any judging, naming the spec file and its ``portrayal`` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2

from polypref import prompts
from polypref.errors import ConfigError
from polypref.records import FULL_PORTRAYALS, Persona, Portrayal, shown_topics

VARIABLES = frozenset({"a", "views", "topics"})  # what sample.py passes to every portrayal template
FIELD = "portrayal"


def locate(name: str, spec_path: str) -> tuple[str, str | None]:
    """Where a spec's ``portrayal:`` template is, as (file name, folder): a file at that path relative to the
    spec's folder wins, so a user's copy of a shipped template is the one used; else the shipped template of that
    name (folder None)."""
    if spec_path:
        candidate = Path(spec_path).parent / name
        if candidate.is_file():
            return candidate.name, str(candidate.parent)
    return name, None


def load(name: str, source: str, env: jinja2.Environment | None = None, spec_path: str = "") -> jinja2.Template:
    """The spec's template (``locate``, relative to ``spec_path``; ``env`` replaces that lookup); ConfigError
    naming ``source``, the spec file, when it is missing, does not parse, or uses a variable a portrayal is never
    given."""
    if env is None:
        name, folder = locate(name, spec_path)
        env = prompts.user_environment(folder)
    try:
        return prompts.checked(env, name, VARIABLES)
    except jinja2.TemplateNotFound:
        shipped = prompts.environment()
        found = sorted(shipped.list_templates(filter_func=lambda n: n.startswith("portrayal")))
        beside = f"next to the spec ({Path(spec_path).parent / name}) nor " if spec_path else ""
        raise ConfigError(
            source, [(FIELD, f"template {name!r} not found {beside}in prompts/ (portrayals there: {found})")]
        ) from None
    except prompts.TemplateProblem as e:
        raise ConfigError(source, [(FIELD, str(e))]) from None


def template_hash(name: str, spec_path: str) -> str:
    """Content hash of the portrayal template a spec's ``portrayal:`` names (its own file or the shipped one)."""
    file, folder = locate(name, spec_path)
    return prompts.template_hash(file, folder)


def render(
    template: jinja2.Template,
    source: str,
    respondent: str,
    attributes: Mapping[str, str | None],
    views: Mapping[str, str | None],
    topics: Mapping[str, str],
) -> str:
    """One persona's portrayal. A template is user code: whatever it raises is reported as the spec's error."""
    try:
        text = template.render(a=attributes, views=views, topics=topics).strip()
    except Exception as e:  # StrictUndefined, a filter on a null, a bad call: the spec's fault, not a crash
        raise ConfigError(
            source,
            [(FIELD, f"template {template.name!r} failed for respondent {respondent}: {type(e).__name__}: {e}")],
        ) from None
    if not text:
        raise ConfigError(source, [(FIELD, f"template {template.name!r} rendered no text for respondent {respondent}")])
    return text


class Portrayer:
    """Portrayals for judging: the sampled one, or, holding the judged topic out, the same template rendered
    with that answer marked not given (templates already handle unanswered topics)."""

    def __init__(self, template: jinja2.Template, source: str, topics: Mapping[str, str], hold_out: bool):
        self.template, self.source, self.topics, self.hold_out = template, source, dict(topics), hold_out

    def __call__(self, persona: Persona, topic: str | None) -> Portrayal:
        shown = self.shown(persona, topic)
        if len(shown) == len(FULL_PORTRAYALS.shown(persona, topic)):  # nothing held out: the sampled text
            return Portrayal(persona.portrayal, shown)
        views = {t: (v if t in shown else None) for t, v in persona.attitudes.items()}
        text = render(self.template, self.source, persona.respondent_id, persona.attributes, views, self.topics)
        return Portrayal(text, shown)

    def shown(self, persona: Persona, topic: str | None) -> tuple[str, ...]:
        return shown_topics(persona, topic, self.hold_out)
