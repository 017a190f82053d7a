"""Draft a population spec from a survey file (``polypref init-spec``).

A labelled survey file already says most of what a spec needs: variable labels name the questions, value labels
the answers, declared missing codes the non-answers, and conventional names the weight and the respondent id.
The draft writes all of it out for a person to read and prune. Its choices are guesses, so each is marked as one;
but it loads and samples as written (answers not given are marked, never dropped, so no respondent is lost before
the user decides), which makes the first edit a choice rather than a repair.

What is known of each variable, and reading it, is ``draft_variables``'; the guesses, ``draft_guesses``'. This
module assembles the spec and writes it out with its comments.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from polypref.errors import ConfigError
from polypref.population.draft_guesses import (
    answers_of,
    attribute_of,
    free_key,
    guess_attributes,
    guess_groups,
    guess_id,
    guess_items,
    guess_weight,
    shared_attitudes,
)
from polypref.population.draft_variables import DRAFT_SUFFIXES, MAX_ANSWERS, Variable, one_line, read_survey

__all__ = ["DRAFT_SUFFIXES", "Draft", "draft_spec"]


@dataclass(frozen=True)
class Draft:
    spec: dict[str, Any]  # what the YAML says, for checks
    text: str  # the YAML, with comments


def draft_spec(survey: Path, spec_path: Path) -> Draft:
    """A spec over ``survey``, to be written at ``spec_path`` (its ``source:`` is relative to it). Raises
    ConfigError naming the survey file when it cannot be read or offers nothing to draft from."""
    file_label, variables = read_survey(survey)
    rows = max((v.rows for v in variables.values()), default=0)
    if rows == 0:
        raise ConfigError(str(survey), [("", "the file has no respondents to draft a spec from")])
    weight, weight_note = guess_weight(variables)
    id_column = guess_id(variables, rows)
    reserved = {weight, id_column}
    candidates = [v for v in variables.values() if v.name not in reserved and v.dtype is not None]
    attributes, notes = guess_attributes(candidates)
    items = guess_items([v for v in candidates if v.name not in {a["column"] for a in attributes.values()}])
    if not items:  # a file without labelled items: take what looks most like one
        items = guess_items([v for v in candidates if not v.labels and not v.demographic], unlabelled=True)
    if not items:
        raise ConfigError(
            str(survey), [("", f"no variable has 2 to {MAX_ANSWERS} answers to draft an attitude item from")]
        )
    if not attributes:  # groups need an attribute: the item with the fewest answers doubles as one
        v = min((variables[i["column"]] for i in items.values()), key=lambda v: len(answers_of(v)))
        key = free_key(v.name, attributes)
        attributes[key], notes[key] = attribute_of(v), "no demographic variable found: an attitude item doubles as one"
    by = guess_groups(attributes, variables)
    stem = re.sub(r"[^a-z0-9]+", "_", survey.stem.lower()).strip("_") or "survey"
    try:
        source = Path(os.path.relpath(survey.resolve(), spec_path.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        source = survey.resolve().as_posix()
    spec = {
        "name": stem,
        "title": one_line(file_label) or f"{survey.name} (edit: the survey's title)",
        "source": source,
        "id_column": id_column,
        "weight_column": weight,
        "terms_class": "no_redistribution",
        "citation": f"TODO: cite the survey this file ({survey.name}) comes from.",
        "terms": f"TODO: the terms of use of {survey.name}: who may use it, and whether derived data may be shared.",
        "portrayal": "portrayal.j2",
        "attributes": attributes,
        "groups": {"by": by},
        "attitudes": shared_attitudes(items),
    }
    text = _render(survey, spec, variables, rows, weight_note, notes)
    return Draft(spec=spec, text=text)


# ---- writing ----


class _Dumper(yaml.SafeDumper):
    """Text with line breaks or invisible characters goes in double quotes, where every one is escaped: PyYAML
    would write some (\x85, \u2028) raw in plain or single-quoted text, and reading folds them into spaces."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = '"' if not text.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def _dump(value: Any, indent: int = 0) -> str:
    """YAML for one entry; indenting a whole block keeps it valid, as YAML nests by relative indentation."""
    # lists and mappings of plain values in flow style ([a, b]), except the entry itself: key: value, not {key: value}
    flat = isinstance(value, dict) and not any(isinstance(x, dict | list) for x in value.values())
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        allow_unicode=True,
        sort_keys=False,
        width=1_000_000,
        default_flow_style=False if flat else None,
    )
    return "".join(" " * indent + line if line.strip() else line for line in text.splitlines(keepends=True))


def _comment(text: str, indent: int = 0) -> str:
    return " " * indent + "# " + one_line(text) + "\n"


def _render(
    survey: Path,
    spec: dict[str, Any],
    variables: dict[str, Variable],
    rows: int,
    weight_note: str,
    notes: dict[str, str],
) -> str:
    out = [
        _comment(f"Population spec drafted by `polypref init-spec` from {survey.name}: {rows} respondents, "),
        _comment(f"{len(variables)} variables. Every choice below is a guess from names and labels: read it through."),
        "# Keep the attributes and attitude items you want (portrayals show them all), fix the topics (judges read\n",
        "# them), and set title, terms_class, citation and terms from the survey's documentation.\n",
    ]
    for key in ("name", "title", "source"):
        out.append(_dump({key: spec[key]}))
    id_note = "guessed: unique on every row" if spec["id_column"] else "none found: respondents are numbered by row"
    out.append(_dump({"id_column": spec["id_column"]}).rstrip("\n") + f"  # {one_line(id_note)}\n")
    out.append(_dump({"weight_column": spec["weight_column"]}).rstrip("\n") + f"  # {one_line(weight_note)}\n")
    out.append(_comment("open | non_commercial | no_redistribution; the last two need population.accept_terms"))
    for key in ("terms_class", "citation", "terms", "portrayal"):
        out.append(_dump({key: spec[key]}))

    out.append(
        "\n"
        + _comment("Who respondents are; missing: mark keeps respondents without an answer (drop: leaves them out).")
    )
    out.append("attributes:\n")
    for name, attribute in spec["attributes"].items():
        v = variables[attribute["column"]]
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}" + (f" ({notes[name]})" if name in notes else ""), 2))
        out.append(_dump({name: attribute}, 2))

    out.append("\n" + _comment("Social groups to sample across: the combinations of these attributes' answers."))
    out.append(_dump({"groups": spec["groups"]}))

    attitudes = spec["attitudes"]
    out.append(
        "\n" + _comment("Survey answers the personas hold. Scales run in code order: check that it is the order")
    )
    out.append(_comment("of agreement (positions 0..1 follow it). Codes not listed read as the file's value labels."))
    out.append("attitudes:\n")
    for key in ("scale", "codes", "missing"):
        if key in attitudes:
            out.append(_dump({key: attitudes[key]}, 2))
    out.append("  items:\n")
    for topic, item in attitudes["items"].items():
        v = variables[item["column"]]
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}", 4))
        out.append(_dump({topic: item}, 4))

    out.append("\n" + _comment(f"Every variable in {survey.name} (name: label):"))
    used = {a["column"]: "attribute" for a in spec["attributes"].values()}
    used |= {i["column"]: "attitude" for i in attitudes["items"].values()}
    used |= {spec["weight_column"]: "weight", spec["id_column"]: "id"}
    for v in variables.values():
        role = f" [{used[v.name]}]" if v.name in used else ""
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}{role}", 2).replace("  # ", "#   ", 1))
    return "".join(out)
