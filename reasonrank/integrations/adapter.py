"""The adapter layer: what the LlamaIndex, LangChain and Haystack adapters share (no framework imported).

An adapter is a thin mapping. It declares its fields from :func:`setting_specs` (derived from
:class:`~reasonrank.core.config.RerankerConfig`), checks its keywords with :func:`check_keywords`,
holds one :class:`AdapterCore`, and in each sync or async framework method converts its items to
passages, calls :meth:`AdapterCore.rerank` / :meth:`AdapterCore.arerank` and maps the returned
:class:`RankedItem` list back onto copies of its inputs.

Behaviour fixed here, once, for all adapters:

- an unknown keyword raises ``TypeError`` naming it; a setting value is checked at construction;
- the empty query (or whitespace only) and a non-positive ``top_n``/``top_k`` raise ``ValueError``;
- zero inputs return ``[]`` without building the model; one input is returned without an LLM call;
- a ``top`` larger than the input returns every input;
- duplicate ids are kept: items are ranked by position, so nothing is dropped or merged;
- scores are strictly decreasing in the returned order (``1 / (rank + 1)`` of the core);
- the :class:`Reranker` is built once, lazily and thread-safely, and reused by sync and async calls;
- a missing framework gives the same ``pip install "reasonrank[...]"`` hint (:func:`missing_extra`);
- ``backend_kwargs`` never carry a credential or ``trust_remote_code`` (refused at construction, so also
  when loading a pipeline) and are serialized without ``headers`` (:func:`check_backend_kwargs`);
- usage, completeness and the model calls of each rerank are on :class:`Ranking` for the frameworks'
  tracing (:mod:`reasonrank.integrations.usage`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import operator
import re
import threading
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasonrank.core.backends import Backend
from reasonrank.core.config import RerankerConfig, iter_settings
from reasonrank.core.reranker import Reranker
from reasonrank.core.types import RerankResult, Usage, rank_scores
from reasonrank.integrations.usage import ModelCall, is_complete, model_calls, usage_of

__all__ = [
    "RANK_KEY",
    "REASONING_KEY",
    "RETRIEVAL_SCORE_KEY",
    "AdapterCore",
    "ModelCall",
    "Ranking",
    "RankedItem",
    "SettingSpec",
    "as_items",
    "check_backend_kwargs",
    "check_keywords",
    "check_query",
    "check_top",
    "init_signature",
    "is_complete",
    "model_calls",
    "missing_extra",
    "passage",
    "plain_secret",
    "pydantic_class",
    "pydantic_fields",
    "serializable_backend_kwargs",
    "setting_specs",
    "settings_of",
    "signature_defaults",
    "usage_of",
]

# Metadata keys the adapters write on returned items.
RETRIEVAL_SCORE_KEY = "retrieval_score"  # the first-stage score of the item, when it had one
REASONING_KEY = "reasonrank_reasoning"  # with include_reasoning=True: reasoning of the window that placed it
RANK_KEY = "reasonrank_rank"  # 0-based rank after reranking


def missing_extra(module: str, extra: str, error: ImportError) -> ImportError:
    """The error every adapter raises when its framework is not installed (raise it ``from error``)."""
    missing = error.name.split(".")[0] if error.name else str(error)
    return ImportError(f'{module} needs {missing!r}, which is not installed: pip install "reasonrank[{extra}]"')


# ---------------------------------------------------------------------- fields, from RerankerConfig
@dataclass(frozen=True)
class SettingSpec:
    """One reranker setting as an adapter field: ``name`` in the adapter, ``setting`` in the config."""

    name: str
    setting: str
    default: Any
    annotation: Any  # framework-neutral type: str | None, int, dict[str, Any], ...
    help: str
    secret: bool
    choices: tuple[str, ...] | None

    @property
    def description(self) -> str:
        choices = f" (one of: {', '.join(self.choices)})" if self.choices else ""
        return self.help + choices


_PLAIN = (str, int, float, bool, type(None))


def _annotation(hint: Any) -> Any:
    """The config's type hint as an adapter field type: settings are names, numbers and plain dicts.

    ``Any`` (backend, strategy, an object-valued setting) becomes ``str``: a ready object goes in
    ``reranker=Reranker(...)``; so do non-plain members of a union (``str | Cache | None`` -> ``str | None``).
    """
    if hint is Any:
        return str
    if typing.get_origin(hint) is Mapping:
        return dict[str, Any]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [m if typing.get_origin(m) is not Mapping else dict[str, Any] for m in typing.get_args(hint)]
        kept = [m for m in members if m in _PLAIN or typing.get_origin(m) is dict]
        return functools.reduce(operator.or_, kept) if kept else str
    return hint


def setting_specs(rename: Mapping[str, str] | None = None) -> tuple[SettingSpec, ...]:
    """Every :class:`RerankerConfig` setting as an adapter field (``rename``: config name -> adapter name)."""
    rename = rename or {}
    hints = typing.get_type_hints(RerankerConfig)
    return tuple(
        SettingSpec(
            name=rename.get(name, name),
            setting=name,
            default=default,
            annotation=_annotation(hints[name]) | None if default is None else _annotation(hints[name]),
            help=meta["help"],
            secret=bool(meta["secret"]),
            choices=tuple(meta["choices"]) if meta["choices"] else None,
        )
        for name, default, meta in iter_settings()
    )


def pydantic_fields(secret_type: type, rename: Mapping[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """``pydantic.create_model`` field definitions for every setting; secrets as ``secret_type``, never dumped."""
    from pydantic import Field

    fields: dict[str, tuple[Any, Any]] = {}
    for spec in setting_specs(rename):
        extra = {"choices": list(spec.choices)} if spec.choices else None
        if spec.secret:
            info = Field(default=None, exclude=True, repr=False, description=spec.description)
            fields[spec.name] = (secret_type | None, info)
        elif isinstance(spec.default, dict):
            info = Field(default_factory=dict, description=spec.description, json_schema_extra=extra)
            fields[spec.name] = (spec.annotation, info)
        else:
            fields[spec.name] = (spec.annotation, Field(default=spec.default, description=spec.description,
                                                        json_schema_extra=extra))  # fmt: skip
    return fields


def pydantic_class(name: str, base: type, secret_type: type, doc: str, top: str = "top_n") -> type:
    """The public pydantic adapter class: ``base`` (the methods), a field per setting, ``top`` checked,
    ``backend_kwargs`` dumped without the entries that are never serialized (``headers``)."""
    from pydantic import create_model, field_serializer, field_validator

    def check(cls: type, value: int | None) -> int | None:
        return check_top(value, top)

    def dump_backend_kwargs(self: Any, value: Mapping[str, Any]) -> dict[str, Any]:
        return serializable_backend_kwargs(value)

    validators = {
        "_check_top": field_validator(top, mode="before")(check),
        "_dump_backend_kwargs": field_serializer("backend_kwargs")(dump_backend_kwargs),
    }
    fields = pydantic_fields(secret_type)
    return create_model(
        name, __base__=base, __module__=base.__module__, __doc__=doc, __validators__=validators, **fields
    )


Param = tuple[str, Any, Any]  # name, default, annotation


def init_signature(leading: Sequence[Param], specs: Iterable[SettingSpec], trailing: Sequence[Param],
                   secret: tuple[Any, Any]) -> inspect.Signature:  # fmt: skip
    """An ``__init__(self, *leading, *, <settings>, *trailing)`` signature for a non-pydantic adapter.

    ``secret`` is the ``(default, annotation)`` of secret settings. Set it as ``__init__.__signature__``,
    so that tools reading the signature (Haystack's init-parameter check) see every setting.
    """
    kinds = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("self", kinds[0])]
    params += [inspect.Parameter(n, kinds[0], default=d, annotation=a) for n, d, a in leading]
    for spec in specs:
        default, annotation = secret if spec.secret else (spec.default, spec.annotation)
        params.append(inspect.Parameter(spec.name, kinds[1], default=default, annotation=annotation))
    params += [inspect.Parameter(n, kinds[1], default=d, annotation=a) for n, d, a in trailing]
    return inspect.Signature(params)


def signature_defaults(signature: inspect.Signature) -> dict[str, Any]:
    """Each parameter's default (``self`` left out); dict defaults copied, so no instance shares one."""
    defaults = {n: p.default for n, p in signature.parameters.items() if n != "self"}
    return {n: dict(d) if isinstance(d, dict) else d for n, d in defaults.items()}


def plain_secret(value: Any) -> Any:
    """A framework secret's value (pydantic ``SecretStr``, Haystack ``Secret``); other values unchanged."""
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if hasattr(value, "resolve_value"):
        return value.resolve_value()
    return value


def settings_of(adapter: Any, specs: Iterable[SettingSpec]) -> dict[str, Any]:
    """The :class:`RerankerConfig` keywords held by an adapter's setting fields (secrets revealed)."""
    return {spec.setting: plain_secret(getattr(adapter, spec.name)) for spec in specs}


def check_keywords(kwargs: Mapping[str, Any], allowed: Iterable[str], owner: str) -> None:
    """``TypeError`` naming the first unknown keyword (with a close match); a Backend instance is refused."""
    names = list(allowed)
    for key, value in kwargs.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{owner} got an unexpected keyword argument {key!r}{hint}")
        if isinstance(value, Backend):
            raise ValueError(f"{key} must be a name; pass a ready backend as reranker=Reranker(backend=...)")


# ---------------------------------------------------------------------- backend_kwargs safety
# A key or header name that holds a credential: api_key, x-api-key, password, client_secret, hf_token, ...
_CREDENTIAL = re.compile(
    r"(^|_)(api_?key|access_?key|secret_?key|private_?key|password|passwd|secret|token|auth|authorization|"
    r"credentials?|cookie)$"
)
NEVER_SERIALIZED = ("headers",)  # backend_kwargs entries kept in memory only: their values may be credentials


def _is_credential(name: Any) -> bool:
    return bool(_CREDENTIAL.search(str(name).lower().replace("-", "_")))


def check_backend_kwargs(backend_kwargs: Mapping[str, Any] | None) -> None:
    """Refuse, at construction, what adapter settings must not carry (they may come from a saved pipeline).

    A credential (``api_key``, ``password``, an ``Authorization`` header, ...) would be serialized with
    the pipeline: it goes in the ``api_key`` setting, the framework's secret type. ``trust_remote_code``
    would let a loaded file run code from a model repository: it is only taken from a ``Reranker`` built
    in code and passed as ``reranker=``.
    """
    backend_kwargs = backend_kwargs or {}
    headers = backend_kwargs.get("headers") or {}
    names = [f"backend_kwargs[{k!r}]" for k in backend_kwargs if _is_credential(k)]
    names += [
        f"backend_kwargs['headers'][{k!r}]" for k in headers if isinstance(headers, Mapping) and _is_credential(k)
    ]
    if names:
        raise ValueError(
            f"{names[0]} looks like a credential, and backend_kwargs are serialized with the pipeline; "
            "pass the key as api_key= (a secret, never serialized; default $REASONRANK_API_KEY), "
            "or build Reranker(...) in code and pass it as reranker="
        )
    if backend_kwargs.get("trust_remote_code"):
        raise ValueError(
            "backend_kwargs trust_remote_code=True is refused: adapter settings can come from a loaded "
            "pipeline (from_dict, Pipeline.loads, from_json, model_validate), and it runs code from the model "
            "repository; build Reranker(model, backend='transformers', trust_remote_code=True) in code and "
            "pass it as reranker="
        )


def serializable_backend_kwargs(backend_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``backend_kwargs`` as serialized: ``headers`` left out (set them again after loading)."""
    return {k: v for k, v in (backend_kwargs or {}).items() if k not in NEVER_SERIALIZED}


# ---------------------------------------------------------------------- input checks
def check_query(query: str | None) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty; ReasonRank needs a non-empty query to rerank against")
    return query


def check_top(top: int | None, name: str = "top_n") -> int | None:
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, int):
        raise ValueError(f"{name} must be a positive int or None, got {top!r}")
    if top < 1:
        raise ValueError(f"{name} must be >= 1, got {top}")
    return top


def as_items(items: Sequence[Any] | None, item_type: type, what: str = "documents") -> list[Any]:
    """``items`` as a list, each checked to be an ``item_type``."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"{what} must be a list, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, item_type):
            raise TypeError(
                f"{what}[{i}] must be a {item_type.__module__}.{item_type.__name__}, got {type(item).__name__}"
            )
    return list(items)


def passage(text: str, title: str | None = None) -> dict[str, str]:
    return {"text": text, "title": title} if title else {"text": text}


# ---------------------------------------------------------------------- ranking
@dataclass(frozen=True)
class RankedItem:
    """One returned item: its position in the input, its new rank and score."""

    index: int
    rank: int
    score: float
    reasoning: str | None = None


@dataclass(frozen=True)
class Ranking:
    """The items to return, best first, and the core result (None when no LLM call was needed)."""

    items: list[RankedItem]
    result: RerankResult | None = None

    @property
    def usage(self) -> Usage:
        return usage_of(self.result)

    @property
    def complete(self) -> bool:
        return is_complete(self.result)

    @property
    def calls(self) -> list[ModelCall]:
        return model_calls(self.result)

    def meta(self) -> dict[str, Any]:
        """``{"usage": {...}, "complete": bool, "calls": n}``: what an adapter reports beside its items."""
        usage = self.usage
        return {"usage": usage.to_dict(), "complete": self.complete, "calls": usage.calls}

    def span_tags(self) -> dict[str, Any]:
        """Tags for the adapter's own tracing span (totals of the call)."""
        usage = self.usage
        tags = {f"reasonrank.usage.{k}": v for k, v in usage.to_dict().items()}
        tags.update({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                     "gen_ai.usage.output_tokens": usage.completion_tokens,
                     "reasonrank.complete": self.complete, "reasonrank.calls": usage.calls})  # fmt: skip
        return tags


def _placing_reasoning(result: RerankResult) -> dict[int, str]:
    """Input index -> reasoning of the last window that ranked it (the one that fixed its place)."""
    out: dict[int, str] = {}
    for window in result.windows:  # in call order, so later windows overwrite earlier ones
        for i in window.passages:
            out[i] = window.reasoning
    return out


def ranked_items(result: RerankResult, top: int | None, *, include_reasoning: bool = False) -> list[RankedItem]:
    """The first ``top`` items of ``result`` (all when None), best first."""
    reasoning = _placing_reasoning(result) if include_reasoning else {}
    keep = len(result.order) if top is None else min(top, len(result.order))
    return [RankedItem(i, r, result.scores[r], reasoning.get(i)) for r, i in enumerate(result.order[:keep])]


def trivial_items(n: int, top: int | None) -> list[RankedItem] | None:
    """The answer without an LLM call for 0 or 1 inputs, else None."""
    if n > 1:
        return None
    return [RankedItem(index=i, rank=i, score=s) for i, s in enumerate(rank_scores(n))][: top or n]


class AdapterCore:
    """One adapter's reranker: built once from validated settings (or given ready), and its calls.

    ``settings`` are :class:`RerankerConfig` keywords (checked here, at construction); ``given`` names
    those the user set explicitly, which a ready ``reranker`` excludes.
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        reranker: Reranker | None = None,
        given: Collection[str] = (),
    ) -> None:
        if reranker is not None and given:
            raise ValueError(
                f"pass either reranker=Reranker(...) or reranker settings ({', '.join(sorted(given))}), not both"
            )
        if reranker is not None and not isinstance(reranker, Reranker):
            raise TypeError(f"reranker must be a reasonrank.Reranker, got {type(reranker).__name__}")
        if reranker is None:  # the reranker is built on first use: its settings are checked now
            check_backend_kwargs((settings or {}).get("backend_kwargs"))
            self.config = RerankerConfig(**(settings or {}))
            Reranker.check_config(self.config)
        else:
            self.config = reranker.config
        self.given = reranker is not None
        self._reranker = reranker
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model: Any, reranker: Reranker | None = None) -> AdapterCore:
        """The core of a pydantic adapter: its setting fields; those in ``model_fields_set`` count as given."""
        specs = setting_specs()
        given = [s.name for s in specs if s.name in model.model_fields_set]
        return cls(settings_of(model, specs), reranker=reranker, given=given)

    @property
    def built(self) -> bool:
        return self._reranker is not None

    @property
    def reranker(self) -> Reranker:
        """The core reranker, built on first use (thread-safe, once)."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = Reranker.from_config(self.config)
        return self._reranker

    @property
    def model_name(self) -> str:
        """The model's name for events and traces (the backend's name without one)."""
        if self._reranker is not None and self.given:
            return self._reranker.model or self._reranker.backend_name
        return self.config.model or self.config.backend_name

    def close(self) -> None:
        """Release a reranker built here (a later call builds it again); a given one is left to its owner."""
        if not self.given and self._reranker is not None:
            self._reranker, reranker = None, self._reranker
            reranker.close()

    async def aclose(self) -> None:
        if not self.given and self._reranker is not None:
            self._reranker, reranker = None, self._reranker
            await reranker.aclose()

    def rerank(
        self, query: str, passages: Sequence[Any], top: int | None, *, reasoning: bool = False,
        deadline: float | None = None,
    ) -> Ranking:  # fmt: skip
        """Rank ``passages`` for ``query``: the best ``top`` (all when None) as :class:`RankedItem` s.

        ``deadline`` (seconds) overrides the ``deadline`` setting for this call.
        """
        items = trivial_items(len(passages), top)
        if items is not None:
            return Ranking(items)
        result = self.reranker.rerank(query, passages, **_per_call(deadline))
        return Ranking(ranked_items(result, top, include_reasoning=reasoning), result)

    async def arerank(
        self, query: str, passages: Sequence[Any], top: int | None, *, reasoning: bool = False,
        deadline: float | None = None,
    ) -> Ranking:  # fmt: skip
        """Async :meth:`rerank` (``await Reranker.arerank``, no thread)."""
        items = trivial_items(len(passages), top)
        if items is not None:
            return Ranking(items)
        result = await self.reranker.arerank(query, passages, **_per_call(deadline))
        return Ranking(ranked_items(result, top, include_reasoning=reasoning), result)


def _per_call(deadline: float | None) -> dict[str, Any]:
    """Per-call keywords for ``Reranker.rerank``: only those set (the settings apply otherwise)."""
    if deadline is None:
        return {}
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    return {"deadline": float(deadline)}
