"""Which files an item source names: a shipped item set, a file, a folder in Hub layout, or a Hub dataset.

``items.source`` is one of:

* a shipped item set by name (``gss_spending`` reads ``data/items/gss_spending.jsonl``);
* a path to a ``.jsonl``, ``.parquet``, ``.json`` or ``.csv`` file;
* a folder in Hugging Face Hub layout (what ``datasets.load_dataset(FOLDER)`` reads);
* ``hf://datasets/ORG/NAME`` or ``hf://datasets/ORG/NAME@REVISION``, a dataset repo on the Hub (or on the
  server ``HF_ENDPOINT`` names). ``items.revision`` (a branch, tag or commit sha) may be given instead of ``@``.

A folder or repo is read the way ``datasets`` reads it (see ``datafiles``): the README.md YAML ``configs:``, else
the file-name conventions; ``.jsonl``, ``.parquet``, ``.json`` and ``.csv`` data files are read. ``items.split`` is a
split name or an expression as ``datasets`` writes them (``train+test``, ``train[:1000]``, ``train[10%:20%]``,
``test[-5%:](pct1_dropremainder)``): each term's rows are that slice of its split's files, in file order; one file
is split ``train``.

Hub repos are read through huggingface_hub, so files land in its standard cache (``HF_HOME``/``HF_HUB_CACHE``),
a second run downloads nothing, and ``HF_HUB_OFFLINE=1`` reads the cache alone. A ``lazy`` source (a limit, a
sliced split) lists its files without downloading them: the reader ``fetch``es each file only when it needs its
rows, or reads a large Parquet file in place (``open_in_place``: HTTP range requests for its footer and the row
groups it needs). Private and gated datasets need a token in ``HF_TOKEN`` (or from ``hf auth login``); it is
registered with ``polypref.safety.secrets`` so no message shows it (see ``hub``). Every error is a
``ConfigError("config", [("items.source" | "items.config" | "items.split" | "items.revision", reason)])``; the
caller names the real config file.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

from polypref import assets, files
from polypref.errors import ConfigError
from polypref.items.datafiles import CONFIG, SUPPORTED_SUFFIXES, either, file_suffix, resolve_layout
from polypref.items.hub import hub_errors, hub_repo, quiet_no_match, repo_files
from polypref.items.hub_errors import is_hub_error, register_tokens

# One term of a split expression, as datasets parses it (datasets/arrow_reader.py: _SUB_SPEC_RE).
_SPLIT_TERM = re.compile(
    r"^(?P<split>\w+(\.\w+)*)(\[(?:(?P<start>-?[\d_]+)(?P<start_pct>%)?)?:(?:(?P<stop>-?[\d_]+)(?P<stop_pct>%)?)?\])?"
    r"(\((?P<rounding>[^)]*)\))?$"
)
_ROUNDINGS = ("closest", "pct1_dropremainder")
# A Hub Parquet file this large that a lazy read needs only part of is read in place (range requests) rather
# than downloaded; a smaller one is downloaded whole, into the cache, where a later or offline run finds it.
RANGE_READ_MIN_BYTES = 32 << 20


Kind = Literal["shipped", "file", "folder", "hub"]


@dataclass(frozen=True)
class HubFile:
    """Where a Hub source's file is: enough to download it, or read it in place, later."""

    repo_id: str
    revision: str  # the resolved commit sha
    path: str  # inside the repo
    size: int | None = None  # bytes, from the repo listing


@dataclass(frozen=True)
class SourceFile:
    path: Path  # a local file (for Hub sources: inside the huggingface_hub cache, once fetched)
    name: str  # how the user knows it: the path they gave, or the path inside the repo
    remote: HubFile | None = None  # a Hub source's file; None for a local one


@dataclass(frozen=True)
class SplitTerm:
    """One term of a split expression: ``train[10%:20%]`` is SplitTerm("train", 10, 20, percent=True)."""

    split: str
    start: int | None = None
    stop: int | None = None
    percent: bool = False
    rounding: str | None = None  # percent slices: "closest" (None) or "pct1_dropremainder", as datasets rounds

    @property
    def sliced(self) -> bool:
        return self.start is not None or self.stop is not None

    @property
    def needs_total(self) -> bool:
        """Whether the bounds depend on the split's row count (a percentage, or counted from the end)."""
        return self.percent or any(b is not None and b < 0 for b in (self.start, self.stop))

    def bounds(self, total: int | None = None) -> tuple[int, int | None]:
        """[start, stop) as rows of the split, as datasets computes them (arrow_reader._rel_to_abs_instr); stop
        None is the split's end. ``total``, the split's rows, is needed only when ``needs_total``."""
        if not self.needs_total:
            return self.start or 0, self.stop
        assert total is not None
        if self.percent and self.rounding == "pct1_dropremainder" and total < 100:
            raise ConfigError(
                CONFIG,
                [("items.split", f"pct1_dropremainder needs a split of 100 rows or more; {self.split} has {total}")],
            )
        step = total // 100 if self.rounding == "pct1_dropremainder" else None

        def absolute(bound: int | None, default: int) -> int:
            if bound is None:
                return default
            if self.percent:
                bound = bound * step if step is not None else round(bound * total / 100)
            return min(max(total + bound, 0) if bound < 0 else bound, total)

        return absolute(self.start, 0), absolute(self.stop, total)


@dataclass(frozen=True)
class SourcePart:
    """One term of the split expression, with the files of its split in reading order."""

    term: SplitTerm
    files: tuple[SourceFile, ...]


@dataclass(frozen=True)
class ItemSource:
    kind: Kind
    files: tuple[SourceFile, ...]  # every file the split expression names, each once, in reading order
    provenance: dict[str, Any] = field(default_factory=dict)  # for the dataset card (see _source); never a token
    parts: tuple[SourcePart, ...] = ()  # what to read of them: one part per term of the split expression


def _source(kind: Kind, parts: list[tuple[SplitTerm, list[SourceFile]]], source: str, **hub: Any) -> ItemSource:
    """An ItemSource whose provenance has the same keys for every kind (None where they do not apply):
    source, kind, repo, revision (the resolved commit sha), requested_revision, config, split, files."""
    files_ = tuple(dict.fromkeys(f for _, part in parts for f in part))
    keys = ("repo", "revision", "requested_revision", "config", "split")
    provenance = {"source": source, "kind": kind, **{k: hub.get(k) for k in keys}, "files": [f.name for f in files_]}
    return ItemSource(kind, files_, provenance, tuple(SourcePart(t, tuple(fs)) for t, fs in parts))


def locate_source(
    source: str, config: str | None = None, split: str = "train", revision: str | None = None, lazy: bool = False
) -> ItemSource:
    """The files ``source`` names for ``config`` and ``split`` (see the module docstring). ``lazy`` (always, for a
    sliced split): a Hub dataset's files are listed, not downloaded; the reader fetches what it reads."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(CONFIG, [("items.source", "must name a shipped item set, a file, a folder or a Hub dataset")])
    _check_name("items.config", config, optional=True)
    _check_name("items.split", split)
    _check_name("items.revision", revision, optional=True)
    terms = parse_split(split)
    if source.startswith("hf://"):
        return _locate_hub(source, config, split, terms, revision, lazy or any(t.sliced for t in terms))
    if revision is not None:
        raise ConfigError(CONFIG, [("items.revision", "only a Hub dataset (hf://datasets/ORG/NAME) has revisions")])
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() and suffix not in SUPPORTED_SUFFIXES:  # "x.jsonl/" is a mistake, not a dataset
        return _locate_folder(path, source, config, split, terms)
    if config is not None:
        raise ConfigError(
            CONFIG, [("items.config", f"{source} is one file: items.config applies to a folder or Hub dataset")]
        )
    if any(t.split != "train" for t in terms):
        reason = (
            f"{source} is one file: items.split applies to a folder or Hub dataset (a file is split 'train', "
            "which may be sliced: train[:1000])"
        )
        raise ConfigError(CONFIG, [("items.split", reason)])
    shown = split if split != "train" else None
    if suffix in SUPPORTED_SUFFIXES:
        files.check_file(path, CONFIG, "items.source", missing="items file not found")
        return _source("file", [(t, [SourceFile(path, source)]) for t in terms], source, split=shown)
    if path.is_file():
        raise ConfigError(CONFIG, [("items.source", f"{source}: items must be a {either(SUPPORTED_SUFFIXES)} file")])
    shipped = assets.path("data", "items", f"{source}.jsonl")
    if not suffix and "/" not in source and os.sep not in source and shipped.is_file():
        found = SourceFile(shipped, f"data/items/{source}.jsonl")
        return _source("shipped", [(t, [found]) for t in terms], source, split=shown)
    names = sorted(p.stem for p in assets.path("data", "items").glob("*.jsonl"))
    raise ConfigError(
        CONFIG,
        [
            (
                "items.source",
                f"items file not found: {source!r} is not a shipped item set, a {either(SUPPORTED_SUFFIXES)} "
                f"file, a folder, or hf://datasets/ORG/NAME (shipped item sets: {names})",
            )
        ],
    )


def parse_split(text: str) -> tuple[SplitTerm, ...]:
    """``items.split`` as datasets reads a split expression (ReadInstruction.from_spec): terms joined by ``+``,
    each ``SPLIT``, ``SPLIT[START:STOP]`` (rows, negative from the end) or the same in percent, optionally with
    ``(closest)`` or ``(pct1_dropremainder)`` rounding."""
    terms = []
    for part in re.split(r"\s*\+\s*", text.strip()):
        match = _SPLIT_TERM.match(part)
        if match is None:
            raise _bad_split(text, f"{part!r} is not SPLIT or SPLIT[START:STOP]")
        percent = bool(match["start_pct"] or match["stop_pct"])
        rounding = match["rounding"]
        try:
            start, stop = (None if match[k] is None else int(match[k]) for k in ("start", "stop"))
        except ValueError:
            raise _bad_split(text, f"{part!r}: slice bounds must be whole numbers") from None
        if rounding is not None and (not percent or rounding not in _ROUNDINGS):
            raise _bad_split(text, f"{part!r}: rounding is {' or '.join(_ROUNDINGS)}, and only for percent slices")
        if percent and any(b is not None and abs(b) > 100 for b in (start, stop)):
            raise _bad_split(text, f"{part!r}: percentages lie between -100 and 100")
        terms.append(SplitTerm(match["split"], start, stop, percent, rounding))
    roundings = {t.rounding or "closest" for t in terms if t.percent}
    if len(roundings) > 1:
        raise _bad_split(text, "percent slices joined by + must round alike")
    return tuple(terms)


def _bad_split(text: str, why: str) -> ConfigError:
    example = "train, train+test, train[:1000], train[10%:20%]"
    return ConfigError(CONFIG, [("items.split", f"cannot read {text!r}: {why} (e.g. {example})")])


def _check_name(field_name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(CONFIG, [(field_name, "must be a non-empty name")])


# ---- folders ------------------------------------------------------------------------------------------------


def _locate_folder(
    folder: Path, source: str, config: str | None, split: str, terms: tuple[SplitTerm, ...]
) -> ItemSource:
    try:
        listing = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    except OSError as e:
        raise ConfigError(CONFIG, [("items.source", f"cannot list {source}: {e.strerror or e}")]) from None
    readme = folder / "README.md"
    text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing else None
    chosen, parts = _resolve_terms(listing, text, config, terms, str(Path(source) / "README.md"))
    found = [(t, [SourceFile(folder / p, str(Path(source) / p)) for p in paths]) for t, paths in parts]
    return _source("folder", found, source, config=chosen, split=split)


def _resolve_terms(
    listing: list[str], readme_text: str | None, config: str | None, terms: tuple[SplitTerm, ...], readme: str
) -> tuple[str, list[tuple[SplitTerm, list[str]]]]:
    """(config name, each term with its split's data files): resolve_layout for each split the expression names."""
    parts = []
    for term in terms:
        chosen, paths = resolve_layout(listing, readme_text, config, term.split, readme=readme)
        parts.append((term, paths))
    return chosen, parts


# ---- the Hub ------------------------------------------------------------------------------------------------


def _locate_hub(
    source: str, config: str | None, split: str, terms: tuple[SplitTerm, ...], revision: str | None, lazy: bool
) -> ItemSource:
    from huggingface_hub import snapshot_download

    repo_id, wanted = hub_repo(source, revision)
    register_tokens()
    with hub_errors(repo_id, wanted), quiet_no_match():
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=wanted, allow_patterns=["README.md"]))
        sha = folder.name
        sizes = repo_files(repo_id, sha, folder)
        listing = sorted(sizes)
        readme = folder / "README.md"
        text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing and readme.is_file() else None
        chosen, parts = _resolve_terms(listing, text, config, terms, f"{source} README.md")
        if not lazy:  # every file now, several at a time; a lazy reader fetches each as it reads it
            paths = dict.fromkeys(p for _, ps in parts for p in ps)
            patterns = [glob.escape(p) for p in paths]
            folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=sha, allow_patterns=patterns))
    found = [(t, [SourceFile(folder / p, p, HubFile(repo_id, sha, p, sizes.get(p))) for p in ps]) for t, ps in parts]
    return _source(
        "hub",
        found,
        f"hf://datasets/{repo_id}",
        repo=repo_id,
        revision=sha,
        requested_revision=wanted or "main",
        config=chosen,
        split=split,
    )


# ---- reading a Hub file later: download it, or read it in place ---------------------------------------------


def fetch(f: SourceFile) -> SourceFile:
    """``f`` as a local file: a Hub file not in the cache yet is downloaded into it (huggingface_hub's own, so a
    later run, or an offline one, finds it there)."""
    if f.remote is None or f.path.is_file():
        return f
    from huggingface_hub import hf_hub_download

    hub = f.remote
    try:
        with hub_errors(hub.repo_id, hub.revision, hub.path):
            path = hf_hub_download(hub.repo_id, hub.path, repo_type="dataset", revision=hub.revision)
    except ConfigError as e:
        if file_suffix(hub.path) != ".parquet" or (hub.size or 0) < RANGE_READ_MIN_BYTES:
            raise
        field_name, reason = e.problems[0]
        why = (
            "(a limited read reads a Parquet file this large in place, caching nothing: a run without items.limit "
            "downloads it)"
        )
        raise ConfigError(CONFIG, [(field_name, f"{reason} {why}")]) from None
    return replace(f, path=Path(path))


def reads_in_place(f: SourceFile) -> bool:
    """Whether a lazy reader should read ``f`` in place: a Hub Parquet file of RANGE_READ_MIN_BYTES or more, not
    in the cache, while online (offline, only the cache can be read)."""
    from huggingface_hub import constants

    hub = f.remote
    return (
        hub is not None
        and file_suffix(hub.path) == ".parquet"
        and (hub.size or 0) >= RANGE_READ_MIN_BYTES
        and not f.path.is_file()
        and not constants.is_offline_mode()
    )


def open_in_place(f: SourceFile) -> BinaryIO:
    """A Hub file opened for HTTP range reads (HfFileSystem without read-ahead: a read fetches only the bytes it
    asks for, so pyarrow gets a Parquet footer and the row groups it decodes, not the file). The caller closes it."""
    from huggingface_hub import HfFileSystem

    hub = f.remote
    assert hub is not None
    with hub_errors(hub.repo_id, hub.revision, hub.path):
        return HfFileSystem().open(f"datasets/{hub.repo_id}@{hub.revision}/{hub.path}", "rb", cache_type="none")


def read_error(f: SourceFile, e: Exception) -> ConfigError | None:
    """The ConfigError a failure of huggingface_hub or the network while reading Hub file ``f`` in place means
    (as items.hub_errors words it); None for any other error, which is the file's own."""
    if f.remote is None or not is_hub_error(e):
        return None
    try:
        with hub_errors(f.remote.repo_id, f.remote.revision, f.remote.path):
            raise e
    except ConfigError as mapped:
        return mapped
