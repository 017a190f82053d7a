"""What a build publishes about its own settings: the config and judge parameters, with no credentials.

Everything the card, ``summary.json``, Prefect's stored flow parameters and artifacts show of a config goes
through ``public``: URLs lose their ``user:pass@`` and secret query parameters, free-form provider settings
(``extra_body``, ``engine_kwargs``, ``chat_template_kwargs``) keep their numbers and switches but show text
only under keys known to be harmless, and every other text is scrubbed of known secrets.
"""

from __future__ import annotations

from typing import Any

from polypref.safety.secrets import redact_url, scrub

URL_KEYS = frozenset({"base_url"})
FREE_FORM_KEYS = frozenset({"extra_body", "engine_kwargs", "chat_template_kwargs"})
REDACTED = "<redacted>"
# Keys of free-form settings whose text values say how the model ran and cannot hold a credential.
SAFE_TEXT_KEYS = frozenset(
    {
        "reasoning_effort",
        "service_tier",
        "verbosity",
        "structured_outputs",
        "choice",
        "regex",
        "grammar",
        "guided_decoding_backend",
        "dtype",
        "kv_cache_dtype",
        "quantization",
        "tokenizer_mode",
        "load_format",
        "distributed_executor_backend",
        "revision",
        "tokenizer_revision",
        "code_revision",
        "attention_backend",
        "role",
    }
)


def public(data: Any, key: str | None = None, free_form: bool = False) -> Any:
    """``data`` (a JSON-like config dump) as it may be published."""
    if isinstance(data, dict):
        return {k: public(v, str(k), free_form or k in FREE_FORM_KEYS) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [public(v, key, free_form) for v in data]
    if isinstance(data, str):
        if key in URL_KEYS:
            return redact_url(data)
        if free_form and key not in SAFE_TEXT_KEYS:
            return REDACTED
        return scrub(data)
    return data
