"""The manifest a model signature covers: file names and their sha256, plus the paths left out."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from weightyard.provenance._hashing import sha256_files, walk_model
from weightyard.provenance._paths import matching_ignore, path_problem
from weightyard.provenance.errors import InvalidManifest

# model_signing leaves these out by default (at the model root only) and records them in the signature;
# a verifier that follows the signature's list then skips them too.
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
DEFAULT_SIGNATURE_NAME = "model.sig"
DEFAULT_IGNORE = (DEFAULT_SIGNATURE_NAME,)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def normalize_sha256(value: object) -> str | None:
    """The lowercase form of a hex sha256 digest, or None if `value` is not one."""
    lowered = value.lower() if isinstance(value, str) else ""
    return lowered if _SHA256_HEX.fullmatch(lowered) else None


def root_digest(digests: Iterable[str]) -> str:
    """sha256 over the raw bytes of the given hex digests, in the given order (the OMS subject digest)."""
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a signature covers: every file of a model by relative POSIX path, with its sha256.

    `files` is kept sorted by code point, as the OMS spec requires for the root digest. `ignore_paths`
    is recorded in the signature so that verifiers skip the same paths the signer skipped.
    """

    model_name: str
    files: Mapping[str, str]
    ignore_paths: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.model_name:
            raise InvalidManifest("a manifest needs a model name")
        checked: dict[str, str] = {}
        for name in sorted(self.files):
            problem = path_problem(name)
            if problem is not None:
                raise InvalidManifest(f"cannot sign this file name: {problem}")
            digest = normalize_sha256(self.files[name])
            if digest is None:
                raise InvalidManifest(f"{name!r} has no valid sha256 digest: {self.files[name]!r}")
            checked[name] = digest
        for entry in self.ignore_paths:
            problem = path_problem(entry)
            if problem is not None:
                raise InvalidManifest(f"cannot record this ignore path: {problem}")
        object.__setattr__(self, "files", MappingProxyType(checked))
        object.__setattr__(self, "ignore_paths", tuple(dict.fromkeys(self.ignore_paths)))

    @property
    def root_digest(self) -> str:
        """The OMS subject digest: sha256 over the file digests in code-point order of their names."""
        return root_digest(self.files.values())


def _ignore_paths(ignore: Iterable[str], ignore_git_paths: bool) -> tuple[str, ...]:
    entries = [entry.rstrip("/") for entry in ignore]
    return tuple(dict.fromkeys([*entries, *(GIT_PATHS if ignore_git_paths else ())]))


def manifest_from_digests(
    files: Mapping[str, str],
    model_name: str,
    *,
    ignore: Iterable[str] = DEFAULT_IGNORE,
    ignore_git_paths: bool = True,
) -> Manifest:
    """Build the manifest of a model whose sha256 digests are already known, without reading any file.

    Files under `ignore` (and the git metadata paths, unless `ignore_git_paths` is false) are left out
    and recorded as ignored, as `model_signing sign` does, so that `model_signing verify` on a
    downloaded copy skips the same files.

    >>> manifest = manifest_from_digests({"config.json": "b418d16e…", "model.safetensors": "cbcb9e0a…"},
    ...                                  model_name="alice/tiny-model")
    """
    ignore_paths = _ignore_paths(ignore, ignore_git_paths)
    skipped = frozenset(ignore_paths)
    kept = {name: digest for name, digest in files.items() if matching_ignore(name, skipped) is None}
    return Manifest(model_name=model_name, files=kept, ignore_paths=ignore_paths)


def manifest_from_folder(
    path: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    ignore: Iterable[str] = DEFAULT_IGNORE,
    ignore_git_paths: bool = True,
) -> Manifest:
    """Hash every regular file of a model folder and build its manifest.

    `model_name` defaults to the folder's name, as in model_signing. Symlinks and special files are
    refused with `UnreadableModel`.

    >>> manifest = manifest_from_folder("tiny-model")
    >>> sorted(manifest.files)
    ['config.json', 'model.safetensors', 'sub/tokenizer.json']
    """
    root = Path(path)
    ignore_paths = _ignore_paths(ignore, ignore_git_paths)
    names, _ = walk_model(root, ignore_paths)
    return Manifest(
        model_name=model_name if model_name is not None else root.resolve().name,
        files=sha256_files(root, names),
        ignore_paths=ignore_paths,
    )
