"""In-process vLLM transport: one engine per process (``llms.engines``), whole micro-batches per ``LLM.chat`` call.

The only module that imports vllm, and only when a vllm transport is opened, so the base install never needs it.
Structured decoding (``StructuredOutputsParams``) constrains every output to the verdict schema, or to the
letters A/B in choice mode, whose first-token log probabilities give a calibrated confidence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from polypref.errors import Interrupted, PolyprefError
from polypref.interrupt import signal_name, stop_requested
from polypref.llms import engines
from polypref.llms.base import ENGINE_ERROR, Completion, LLMJudgeConfig, Request, request_schema
from polypref.safety.secrets import scrub

log = logging.getLogger("polypref.llms.vllm")


def _engine_dead(error: Exception) -> bool:
    """The engine's processes are gone (killed, out of memory): every later call would fail the same way."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:  # another vLLM layout: go by name
        return type(error).__name__ == "EngineDeadError"
    return isinstance(error, EngineDeadError)


INSTALL_HINT = "pip install '.[vllm]' on a GPU machine, or '.[cpu-llm]' for CPU smoke tests"


class VllmJudgeConfig(LLMJudgeConfig):
    backend: Literal["vllm"] = "vllm"
    dtype: str = Field("auto", description="auto, bfloat16, float16, float32")
    max_model_len: int | None = Field(4096, ge=128, description="Context length the engine reserves for")
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    kv_cache_memory_bytes: int | None = Field(None, ge=1, description="KV cache size (CPU builds need it)")
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (faster start, slower decode)")
    enable_prefix_caching: bool = True
    structured_outputs_backend: Literal["xgrammar", "guidance", "auto"] = Field(
        "xgrammar",
        description="Grammar engine; whitespace outside strings is disabled so no model can loop on it",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description='Passed to the chat template, e.g. {"enable_thinking": false}'
    )
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Further vllm.LLM(...) arguments")


def require_vllm(section: str = "judge") -> None:
    """Import vLLM now, so a broken install fails with advice before any engine or Prefect work starts."""
    try:
        from vllm import LLM  # noqa: F401  (the engine import is what pulls in torchvision)
    except ImportError as e:
        raise PolyprefError(f"{section}.backend vllm needs vLLM: {INSTALL_HINT} ({e})") from None
    except RuntimeError as e:
        if "torchvision" not in str(e):
            raise
        raise PolyprefError(
            f"vLLM failed to import: {e}. PyPI's torchvision does not work with the CPU build of torch: "
            "pip uninstall -y torchvision torchaudio torchcodec"
        ) from None


class VllmLLM:
    """The vLLM engine as a transport (``llms.open``): callers take turns, one engine call at a time."""

    serialize_calls = True

    def __init__(self, config: VllmJudgeConfig, seed: int, workdir: Path | None = None, section: str = "judge"):
        self.config = config
        require_vllm(section)
        from vllm import LLM, SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self._sampling_params = SamplingParams
        self._structured = StructuredOutputsParams
        labels = ["A", "B", "tie"] if config.allow_ties else ["A", "B"]
        self._structure: StructuredOutputsParams | None
        if config.mode == "choice":
            self._structure = StructuredOutputsParams(choice=labels)
        elif config.mode == "text":  # response generation (polypref.generation): free text, unconstrained
            self._structure = None
        else:
            self._structure = StructuredOutputsParams(json=request_schema(config.allow_ties))
        self._logprobs = len(labels) if config.mode == "choice" else None
        # the engine constrains every output, so each row records the constraint it was decoded under
        self._format = {"choice": "choice", "text": "none"}.get(config.mode, "json_schema")
        engine = {
            "dtype": config.dtype,
            "max_model_len": config.max_model_len,
            "tensor_parallel_size": config.tensor_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "enforce_eager": config.enforce_eager,
            "enable_prefix_caching": config.enable_prefix_caching,
            "seed": seed,
            # engine-wide: the per-request flag is ignored, and without it a weak model can emit JSON
            # whitespace until max_tokens (seen with greedy decoding on the tiny test model)
            "structured_outputs_config": {
                "backend": config.structured_outputs_backend,
                "disable_any_whitespace": True,
            },
            **({"kv_cache_memory_bytes": config.kv_cache_memory_bytes} if config.kv_cache_memory_bytes else {}),
            **config.engine_kwargs,
        }
        key = engines.settings_key(config.model, engine)
        self._lease = engines.lease(key, lambda: LLM(model=config.model, **engine))
        self.llm = self._lease.engine
        self.params = config.model_dump(exclude={"backend", "model"})

    @staticmethod
    def environment(config: VllmJudgeConfig, section: str = "judge") -> list[tuple[str, str]]:
        """A vLLM install that imports (``require_vllm``), as a problem of ``<section>.backend``."""
        try:
            require_vllm(section)
        except PolyprefError as e:  # the field is named once, by the ConfigError
            return [(f"{section}.backend", str(e).removeprefix(f"{section}.backend "))]
        return []

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        if not requests:
            return []
        try:
            outputs = self._chat(requests)
        except Exception as e:  # one bad prompt (say, too long) fails the whole call: isolate it
            if _engine_dead(e):
                self._lease.discard()
                # no request of this call was answered: nothing of it may be saved as done
                if stop_requested():  # a terminal's Ctrl-C reaches the engine's processes too
                    raise Interrupted(signal_name()) from None
                raise PolyprefError(
                    f"the vLLM engine stopped ({scrub(e)[:200]}); micro-batches finished so far are saved, "
                    "rerun the same command to resume"
                ) from None
            if len(requests) == 1:
                return [
                    Completion(
                        error=f"{ENGINE_ERROR}: {type(e).__name__}: {str(e)[:300]}", response_format=self._format
                    )
                ]
            log.warning("vLLM call over %d requests failed (%s); retrying one by one", len(requests), scrub(e)[:300])
            return [c for r in requests for c in self.generate([r])]
        return [self._completion(o) for o in outputs]

    def _chat(self, requests: Sequence[Request]) -> list[Any]:
        cfg = self.config
        params = [
            self._sampling_params(
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_tokens,
                seed=r.seed,
                structured_outputs=self._structured(choice=list(r.options)) if r.options else self._structure,
                logprobs=self._logprobs,
            )
            for r in requests
        ]
        try:
            with self._lease.lock:  # transports lent one engine take turns
                return self.llm.chat(
                    [r.messages for r in requests],
                    params,
                    use_tqdm=False,
                    chat_template_kwargs=cfg.chat_template_kwargs or None,
                )
        except Exception:
            raise
        except BaseException:  # interrupted mid-call (KeyboardInterrupt): its requests may still run in the engine
            self._lease.discard()
            raise

    def _completion(self, output: Any) -> Completion:
        choice = output.outputs[0]
        logprobs = None
        if self._logprobs and choice.logprobs:
            logprobs = {lp.decoded_token.strip(): lp.logprob for lp in choice.logprobs[0].values()}
        return Completion(
            text=choice.text,
            finish_reason=choice.finish_reason,
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(choice.token_ids),
            choice_logprobs=logprobs,
            response_format=self._format,
        )

    def prefix_cache_counters(self) -> tuple[int, int]:
        """(queries, hits) in tokens since the engine started (needs disable_log_stats=False)."""
        counters = {m.name: getattr(m, "value", 0) for m in self.llm.get_metrics()}
        return int(counters.get("vllm:prefix_cache_queries", 0)), int(counters.get("vllm:prefix_cache_hits", 0))

    def close(self) -> None:
        """Give the engine back: kept loaded for the next opening with its settings (``llms.engines``)."""
        if getattr(self, "llm", None) is not None:
            self.llm = None
            self._lease.release()
