"""Portrayal templates: the text that tells a judge who it is, rendered from a persona's survey answers.

A spec names its template (``portrayal:``, looked up in prompts/). The template is loaded and checked when the spec
is loaded, and rendered while the population is sampled, so a missing file, a syntax error or a variable the
template cannot have all stop the build before any judging, naming the spec file and its ``portrayal`` field.
"""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
import jinja2.meta

from polypref import prompts
from polypref.errors import ConfigError
from polypref.records import FULL_PORTRAYALS, Persona, Portrayal, shown_topics

VARIABLES = frozenset({"a", "views", "topics"})  # what sample.py passes to every portrayal template
FIELD = "portrayal"


def load(name: str, source: str, env: jinja2.Environment | None = None) -> jinja2.Template:
    """The named template (from prompts/ unless ``env`` says otherwise); ConfigError naming ``source``, the spec
    file, when it is missing, does not parse, or uses a variable a portrayal is never given."""
    env = env or prompts.environment()
    try:
        template = env.get_template(name)
        text, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    except jinja2.TemplateNotFound:
        found = sorted(env.list_templates(filter_func=lambda n: n.startswith("portrayal")))
        raise ConfigError(
            source, [(FIELD, f"template {name!r} not found in prompts/ (portrayals there: {found})")]
        ) from None
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(source, [(FIELD, f"template {name!r} line {e.lineno}: syntax error: {e.message}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, [(FIELD, f"template {name!r} is not UTF-8 text")]) from None
    except (jinja2.TemplateError, OSError) as e:
        raise ConfigError(source, [(FIELD, f"template {name!r} cannot be loaded: {e}")]) from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(env.parse(text)) - VARIABLES)
    if unknown:
        raise ConfigError(
            source,
            [(FIELD, f"template {name!r} uses undefined variables {unknown}; it gets {sorted(VARIABLES)}")],
        )
    return template


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
