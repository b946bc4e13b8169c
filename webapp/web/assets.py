"""Static files under content-hashed names, computed once at startup: nothing to build before a run."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

STATIC = Path(__file__).resolve().parent / "static"
URL_PREFIX = "/assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
HASH_LENGTH = 12
# Licences and version notes ship beside the vendored files; they are not served.
SERVED_SUFFIXES = frozenset({".js", ".css", ".svg", ".png", ".ico"})
# Relative imports of an ES module: `from "./x.js"`, `import "./x.js"`, `import("./x.js")`.
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"']+)\2""")
# Below this a gzip body saves less than the header costs.
GZIP_MIN_BYTES = 1024


class AssetError(RuntimeError):
    """The static tree cannot be served as it is (a missing import, an import cycle)."""


@dataclass
class Asset:
    """One served file: its logical path (as templates name it), hashed name, body and type."""

    path: str
    hashed: str
    body: bytes
    mimetype: str
    imports: tuple[str, ...] = ()
    _gzipped: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gzipped(self) -> bytes | None:
        """The body gzipped, made on first use (None when too small to be worth it)."""
        if len(self.body) < GZIP_MIN_BYTES or not self.mimetype.startswith(
            ("text/", "application/javascript")
        ):
            return None
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


def _hashed_name(path: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem}.{digest}{pure.suffix}"))


def _mimetype(path: str) -> str:
    if path.endswith(".js"):
        return "application/javascript; charset=utf-8"
    if path.endswith(".css"):
        return "text/css; charset=utf-8"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class Manifest:
    """Every served file of `root` by logical path and by hashed name.

    A module's relative imports are rewritten to the hashed names of what they import, and its own
    hash is taken after that rewrite: a change in any module renames every module that depends on it,
    so a page never pairs a new module with a cached old one.
    """

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._sources = {
            file.relative_to(root).as_posix(): file.read_bytes()
            for file in sorted(root.rglob("*"))
            if file.is_file() and file.suffix in SERVED_SUFFIXES
        }
        self.by_path: dict[str, Asset] = {}
        for path in self._sources:
            self._build(path, ())
        self.by_hashed = {asset.hashed: asset for asset in self.by_path.values()}

    def _build(self, path: str, importing: tuple[str, ...]) -> Asset:
        if path in self.by_path:
            return self.by_path[path]
        if path in importing:
            raise AssetError(f"import cycle: {' -> '.join((*importing, path))}")
        if path not in self._sources:
            raise AssetError(f"{importing[-1]} imports {path}, which is not under {self.root}")
        body = self._sources[path]
        imports: list[str] = []
        # Vendored files are served exactly as their package ships them.
        if path.endswith(".js") and not path.startswith("vendor/"):
            text = body.decode()

            def rewrite(match: re.Match[str]) -> str:
                target = PurePosixPath(path).parent / match[3]
                logical = _normalize(target)
                dependency = self._build(logical, (*importing, path))
                imports.append(logical)
                specifier = match[3].rsplit("/", 1)[0] + "/" + PurePosixPath(dependency.hashed).name
                return f"{match[1]}{match[2]}{specifier}{match[2]}"

            body = _IMPORT.sub(rewrite, text).encode()
        asset = Asset(path, _hashed_name(path, body), body, _mimetype(path), tuple(imports))
        self.by_path[path] = asset
        return asset

    def url(self, path: str) -> str:
        """The URL of logical `path` (KeyError when there is no such file: a template's typo fails loudly)."""
        return URL_PREFIX + self.by_path[path].hashed

    def preloads(self, path: str) -> list[str]:
        """URLs of every module `path` imports, directly or not: fetched at once, not one level at a time."""
        seen: list[str] = []
        stack = list(self.by_path[path].imports)
        while stack:
            logical = stack.pop()
            if logical not in seen:
                seen.append(logical)
                stack.extend(self.by_path[logical].imports)
        return [self.url(logical) for logical in sorted(seen)]


def _normalize(path: PurePosixPath) -> str:
    """`a/b/../c.js` as `a/c.js` (imports never leave the static root)."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                raise AssetError(f"{path} leaves the static root")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)
