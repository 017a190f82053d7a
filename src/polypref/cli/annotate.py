"""Commands that write item files for items.source: annotate (open items given survey topics and stances by the
config's LLM judge, and the commands to run next) and template-items (items made from an item spec)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from polypref import files
from polypref.cli.common import (
    ConfigArg,
    ForceOpt,
    OverwriteOpt,
    SetOpt,
    app,
    check_new_file,
    load_settings,
    out,
    overwriting,
)
from polypref.config import BuildConfig
from polypref.errors import ConfigError
from polypref.items.config import ItemsConfig


@app.command()
def annotate(
    config: ConfigArg = None,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the annotated items (JSONL)")] = Path(
        "annotated.jsonl"
    ),
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Give the config's open items survey topics and stances, asking its LLM judge; writes polypref JSONL that
    the simulated judge (and anything that needs stances) can use as items.source."""
    import tempfile

    from polypref import pipeline
    from polypref.generation import annotate as annotating

    cfg, source = load_settings(config, set_)
    check_new_file(out_path, overwriting(overwrite, force), "annotated.jsonl")
    generator, items, spec = pipeline.annotation_inputs(cfg, source)
    with tempfile.TemporaryDirectory(prefix="polypref-annotate-") as work:
        templates = getattr(cfg.judge, "templates", None)
        result = annotating.annotate(items, spec, generator, cfg.seed, Path(work), templates)
    annotating.write(result.items, out_path)
    out.print(annotating.summary(result, out_path, generator.model))
    out.print(_annotate_next_steps(result, out_path, config, set_ or [], cfg))


@app.command("template-items")
def template_items(
    spec: Annotated[str, typer.Argument(help="Item spec: a name in data/item_specs/ or a .yaml path")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the items (polypref JSONL)")] = Path(
        "items.jsonl"
    ),
    population: Annotated[
        str | None, typer.Option(help="Population spec whose attitudes and scale the topics and stances must match")
    ] = None,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Make items from a spec (topics x groups x value dimensions x question templates, two options at opposite
    poles); writes polypref JSONL for items.source."""
    from polypref.generation import annotate as annotating
    from polypref.items.templated import load_item_spec, resolve_item_spec
    from polypref.population import load_spec

    check_new_file(out_path, overwriting(overwrite, force), "items.jsonl")
    item_spec = load_item_spec(spec)
    if population is not None:
        item_spec.check_against(load_spec(population), str(resolve_item_spec(spec)))
    items = item_spec.items()
    annotating.write(items, out_path)
    out.print(f"wrote {out_path}: {len(items)} items from {resolve_item_spec(spec)}")
    out.print(f"build with them: polypref build --set items.source={shlex.quote(str(out_path))} ...")


# items settings that apply to the annotated file as to the source; every other one says how the source was read,
# and the annotated file is polypref JSONL holding exactly the items read
_PAIRING = ("pairing", "pairs_per_prompt")


def _annotate_next_steps(
    result: Any, out: Path, config: Path | None, overrides: Sequence[str], cfg: BuildConfig
) -> str:
    """Commands to run next, from the same folder, that work as printed: the same config and --set overrides,
    the annotated file as the items (read as written: the original source's format, columns, sample and topic
    filter reset), and the simulated judge when every item is annotated; else (or when the build generates the
    responses, which then have no stances) the config's own LLM judge, the only kind that judges open items."""
    defaults = ItemsConfig()
    ours = {"items.source": _yaml_text(str(out))}
    for name in ItemsConfig.model_fields:
        default = getattr(defaults, name)
        if name not in ("source", *_PAIRING) and getattr(cfg.items, name) != default:
            ours[f"items.{name}"] = _yaml_text(default) if isinstance(default, str) else json.dumps(default)
    samples = f", samples: {cfg.judge.samples}" if cfg.judge.samples != 1 else ""
    simulated = f"judge={{backend: simulated{samples}}}"
    if result.still_open == 0 and cfg.generate is None:
        ours["judge"] = simulated.partition("=")[2]
        head = "check them, then build with the simulated judge:"
    elif cfg.generate is not None:
        head = (
            "the build generates their responses, without stances, which the simulated judge needs: check and build "
            f"them with the config's {cfg.judge.backend} judge, which judges open items from the persona's portrayal:"
        )
    else:
        head = (
            f"{result.still_open} items are still open, which the simulated judge refuses: check and build them with "
            f"the config's {cfg.judge.backend} judge, which judges open items from the persona's portrayal (or give "
            f"them a topic and stances in {out} by hand, or drop them, and add --set {shlex.quote(simulated)}):"
        )
    # an override of a key set here (or inside it) would be replaced anyway: left out
    kept = [o for o in overrides if not any(_within(o.partition("=")[0].strip(), key) for key in ours)]
    sets = [*kept, *(f"{key}={value}" for key, value in ours.items())]
    args = shlex.join([*([str(config)] if config is not None else []), *(a for s in sets for a in ("--set", s))])
    dataset = shlex.quote(str(out.with_name(f"{out.stem}-dataset")))
    return f"{head}\n  polypref validate {args}\n  polypref build {args} --out {dataset}"


def _within(key: str, section: str) -> bool:
    """Whether --set ``key`` sets ``section`` or a key inside it (so a later --set of ``section`` replaces it)."""
    return key == section or key.startswith(f"{section}.")


def _yaml_text(text: str) -> str:
    """``text`` as a --set value that reads back as that string (plain if YAML keeps it so, else quoted)."""
    try:
        plain = files.parse_yaml(text, "") == text
    except ConfigError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)
