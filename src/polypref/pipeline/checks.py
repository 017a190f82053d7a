"""What is checked before any work: survey terms, the judge's environment, endpoints, annotation inputs."""

from __future__ import annotations

from typing import Any

from polypref import llms
from polypref.build.plan import BuildPlan
from polypref.config import BuildConfig
from polypref.errors import ConfigError, EndpointUnreachable
from polypref.fidelity.questions import check_topics
from polypref.generation import check_environment
from polypref.generation.annotate import annotator
from polypref.items import read_items
from polypref.llms import probe
from polypref.population import load_spec
from polypref.population.spec import SurveySpec
from polypref.records import Item
from polypref.safety.secrets import redact_url


def check_before_work(config: BuildConfig, spec: SurveySpec, source: str) -> None:
    """What the items aside needs checking before any work: an opt-in survey's terms are accepted, the judge can
    run here, and the fidelity check's topics are the spec's."""
    check_topics(config, spec, source)
    if spec.opt_in and not config.population.accept_terms:
        raise ConfigError(
            source,
            [
                (
                    "population.accept_terms",
                    f"spec {spec.name} uses a source with {spec.terms_class.replace('_', '-')} terms: "
                    f"{spec.terms} Set population.accept_terms: true to build with it.",
                )
            ],
        )
    _check_judge_environment(config, source)


def check_endpoints(plan: BuildPlan) -> None:
    """Every OpenAI-compatible endpoint the build calls (the judge's, the generators') takes a connection: a
    closed port or an unknown host stops the build here, in a moment, with nothing sent or written (the judge's
    own probe, before its first request, then checks the key and the model). Not asked of a build whose store
    may already hold every judgment (a rerun needs no endpoint), nor of workers' endpoints (a work pool or Ray
    cluster may reach what this machine cannot): for those the judge's own probe decides, if a request is due."""
    config = plan.config
    if config.runner.kind != "local":
        return
    wanted: list[tuple[str, str]] = []
    if config.judge.backend == "openai":
        wanted += [("judge", url) for url in config.judge.endpoints]
    for index, generator in enumerate(config.generate.generators if config.generate else ()):
        if generator.backend == "openai":
            wanted += [(f"generate.generators.{index}", url) for url in generator.endpoints]
    dead: dict[str, list[tuple[str, str]]] = {}
    for (section, url), cause in zip(wanted, probe.unconnectable([url for _, url in wanted]), strict=True):
        if cause is not None:
            dead.setdefault(section, []).append((redact_url(url), cause))
    # the store's footers are read only when an endpoint is down: not on every build's way to its first request
    if dead and plan.store.count() < plan.num_units + plan.persona_free_units:
        section, found = next(iter(dead.items()))
        raise EndpointUnreachable(probe.unreachable_message(section, found, how="a TCP connection"))


def _check_judge_environment(config: BuildConfig, source: str) -> None:
    """What the judge and the generators need from this machine (an engine install, a key in the environment:
    ``llms.environment``) is checked before any work, not discovered mid-run."""
    problems = llms.environment(config.judge, "judge") if config.judge.backend in llms.LLMS else []
    if config.generate is not None:
        problems += check_environment(config.generate)
    if problems:
        raise ConfigError(source, problems)


def annotation_inputs(config: BuildConfig, source: str) -> tuple[Any, tuple[Item, ...], SurveySpec]:
    """What ``polypref annotate`` needs, checked before any request: the judge as a free-text backend, the
    items and the spec whose topics and scales the answers must name."""
    spec = load_spec(config.population.spec)
    try:
        generator = annotator(config.judge)
        loaded = read_items(config.items, spec, config.seed)
    except ConfigError as e:
        if e.source != "config":
            raise
        raise ConfigError(source, e.problems) from None
    _check_judge_environment(config, source)
    return generator, loaded.items, spec
