"""The jinja2 environments over the template folders: strict, so a typo in a template fails loudly.

A user's folder of templates (``judge.templates``, a spec's portrayal file) is searched before the shipped
prompts/: a file there replaces the shipped template of the same name, every other name falls back to it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import jinja2
import jinja2.meta

from polypref import assets

MARKER_OPEN, MARKER_CLOSE = "<<<", ">>>"

# The templates rendered with the judge's model, and the variables each is rendered with (judges/llm.py,
# fidelity/questions.py, generation/annotate.py): what a user's folder may replace, and all a replacement may use.
# Portrayal templates are not here: a population spec names its own (population/portrayal.py).
VARIABLES: dict[str, frozenset[str]] = {
    "judge_system.j2": frozenset({"persona", "mode", "allow_ties"}),
    "judge_pairwise.j2": frozenset({"prompt", "turns", "first", "second", "mode", "persona"}),
    "survey_system.j2": frozenset({"persona"}),
    "survey_question.j2": frozenset({"question", "options"}),
    "annotate_topic.j2": frozenset({"questions", "prompt"}),
    "annotate_stance.j2": frozenset({"question", "scale", "prompt", "response"}),
}
SUFFIX = ".j2"


class TemplateProblem(ValueError):
    """A template that cannot be used; the message names it, the line where there is one, and the reason."""


def delimit(text: str) -> str:
    """Make untrusted text unable to forge or close a ``<<<MARKER>>>``: its angle runs become look-alikes."""
    return text.replace(MARKER_OPEN, "‹‹‹").replace(MARKER_CLOSE, "›››")


@cache
def environment(folder: str = "prompts", user: str | None = None) -> jinja2.Environment:
    """The strict environment over an asset folder: prompts/ for model text, schemas/ for the dataset card;
    with ``user`` (an absolute folder), that folder's templates first and the asset folder's for the rest."""
    shipped = jinja2.FileSystemLoader(str(assets.path(folder)))
    env = jinja2.Environment(
        loader=shipped if user is None else jinja2.ChoiceLoader([jinja2.FileSystemLoader(user), shipped]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # prompts are plain text read by models, not HTML
    )
    env.filters["delimit"] = delimit
    return env


def user_environment(user: str | Path | None) -> jinja2.Environment:
    """prompts/, under the user's folder when one is given (made absolute: a later change of directory, or a
    relative spelling of the same folder, finds the same files and the same cached environment)."""
    return environment(user=None if user is None else str(Path(user).resolve()))


def template(name: str, user: str | Path | None = None) -> jinja2.Template:
    """A template: the user's folder's file of that name where it has one, else the shipped one."""
    return user_environment(user).get_template(name)


def template_hash(name: str, user: str | Path | None = None) -> str:
    """Content hash of the template actually rendered (the user's where it replaces the shipped one), recorded
    in provenance and the judge's key so a prompt change is visible and never reuses other prompts' answers."""
    env = user_environment(user)
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def is_users(name: str, user: str | Path | None) -> bool:
    """Whether the user's folder holds ``name``, so that it, not the shipped template, is rendered."""
    return user is not None and (Path(user) / name).is_file()


def checked(env: jinja2.Environment, name: str, allowed: frozenset[str]) -> jinja2.Template:
    """``name`` compiled from ``env``, using no variable outside ``allowed``, so a template that cannot render
    fails where it is named, not mid-build. TemplateProblem otherwise; TemplateNotFound is the caller's."""
    try:
        loaded = env.get_template(name)
        text, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    except jinja2.TemplateNotFound:
        raise
    except jinja2.TemplateSyntaxError as e:
        where = name if e.name in (None, name) else f"{name} (in {e.name})"
        raise TemplateProblem(f"template {where!r} line {e.lineno}: syntax error: {e.message}") from None
    except UnicodeDecodeError:
        raise TemplateProblem(f"template {name!r} is not UTF-8 text") from None
    except (jinja2.TemplateError, OSError) as e:
        raise TemplateProblem(f"template {name!r} cannot be loaded: {e}") from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(env.parse(text)) - allowed)
    if unknown:
        raise TemplateProblem(f"template {name!r} uses undefined variables {unknown}; it gets {sorted(allowed)}")
    return loaded


def check_folder(folder: str | Path) -> list[str]:
    """What is wrong with a user's template folder: each ``*.j2`` file in it must be one polypref renders (a
    misspelt name would silently leave the shipped prompt in use), compile, and use only its variables. Other
    files (partials the templates include: give them another suffix) are left alone."""
    path = Path(folder)
    if not str(folder).strip():
        return ["must name a folder"]
    if not path.is_dir():
        return [f"{folder} is not a folder" if path.exists() else f"folder {folder} not found"]
    env = user_environment(path)
    names = sorted(p.name for p in path.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    unknown = [name for name in names if name not in VARIABLES]
    problems: list[str] = []
    if unknown:
        hint = (
            "; a population spec names its own portrayal template (portrayal: PATH, relative to the spec)"
            if any(name.startswith("portrayal") for name in unknown)
            else ""
        )
        problems.append(f"unknown template files {unknown}: yours may replace {sorted(VARIABLES)}{hint}")
    for name in names:
        if name in VARIABLES:
            try:
                checked(env, name, VARIABLES[name])
            except TemplateProblem as e:
                problems.append(str(e))
    if not names:
        problems.append(f"{folder} holds none of the templates polypref renders: {sorted(VARIABLES)}")
    return problems
