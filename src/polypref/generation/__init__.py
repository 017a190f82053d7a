"""Responses for prompts-only items: ``n`` per prompt from each configured generator, saved as they finish.

Generators open the judges' transports (``llms.open``: the vLLM engine, an OpenAI-compatible API) in a free-text
mode, so concurrency, retries, key handling, secret scrubbing, fatal setup errors and Ctrl-C behave as when judging.

Response ids are known before anything is generated (``plan_slots``): a hash of the item, the generator's model,
its place in the list and the sample number, so pairs can be planned, fingerprinted and sharded first.
``generate`` fills the texts; each finished micro-batch is written atomically to the store, one row per slot, and
a rerun reuses every usable saved response made under the same settings and asks only for the rest. A slot that
still has no usable text after retries fails the call (``GenerationError``): a pair needs both texts.
"""

from polypref.generation.config import (
    OPERATIONAL,
    GenerateConfig,
    GeneratorConfig,
    OpenAIGeneratorConfig,
    VllmGeneratorConfig,
    check_environment,
    settings_key,
)
from polypref.generation.run import (
    GenerationError,
    generate,
    identical_texts,
    plan_slots,
    prompt_key,
    request_messages,
    request_seed,
    response_id,
)
from polypref.generation.store import STORE_COLUMNS, load_store

__all__ = [
    "OPERATIONAL",
    "STORE_COLUMNS",
    "GenerateConfig",
    "GenerationError",
    "GeneratorConfig",
    "OpenAIGeneratorConfig",
    "VllmGeneratorConfig",
    "check_environment",
    "generate",
    "identical_texts",
    "load_store",
    "plan_slots",
    "prompt_key",
    "request_messages",
    "request_seed",
    "response_id",
    "settings_key",
]
