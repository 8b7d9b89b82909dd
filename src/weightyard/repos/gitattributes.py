"""Which files are LFS files (`.gitattributes`) and which are ignored (`.gitignore`), as git decides.

Both files are untrusted repo content, so parsing is bounded (`MAX_RULES_BYTES`, `MAX_RULES`, and
`MAX_PATTERN_LENGTH` per pattern) and matching never backtracks: a pattern is a short list of tokens run as
a set of states over the path, O(len(path) × len(pattern)). Rules are parsed when a commit is prepared or
written (preupload, commit), never when a listing is read: listings show the `lfs` flag the commit stored.

Pattern rules are git's (gitignore(5), gitattributes(5)): a pattern without a `/` (other than a trailing one)
matches the name at any depth; one with a `/` is anchored at the repo root; `*`, `?` and `[...]` never match
`/`; a leading `**/`, a trailing `/**` and an inner `/**/` match any number of folders. Only the root
`.gitattributes` and `.gitignore` are read (git also reads those of subfolders; the Hub's tooling writes
root ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

GITATTRIBUTES = ".gitattributes"
GITIGNORE = ".gitignore"
MAX_RULES_BYTES = 64 * 1024
MAX_RULES = 1000
MAX_PATTERN_LENGTH = 256

# The `.gitattributes` every new repo starts with, byte for byte the Hub's (git blob id a6344aac…).
DEFAULT_GITATTRIBUTES = b"""\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""

# Pattern tokens: a literal character, one non-`/` character (`?`), a character class, a run of non-`/`
# characters (`*`), a run of anything (`**` at the end), and zero or more whole folders (`**/`).
_ONE = "?"
_STAR = "*"
_ANY = "**"
_DIRS = "**/"
_Token = str | tuple[bool, str]  # a 1-char literal, one of the markers above, or (negated, class members)


def _class_members(body: str) -> str:
    """The characters of a `[...]` body, ranges expanded (bounded by the pattern length cap)."""
    members: list[str] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = ord(body[index]), ord(body[index + 2])
            members.extend(chr(code) for code in range(low, min(high, low + 256) + 1))
            index += 3
        else:
            members.append(body[index])
            index += 1
    return "".join(members)


def _tokens(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            end = index
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            double = end - index >= 2
            at_start = index == 0 or pattern[index - 1] == "/"
            if double and at_start and end < len(pattern) and pattern[end] == "/":
                tokens.append(_DIRS)
                index = end + 1
                continue
            if double and at_start and end == len(pattern):
                tokens.append(_ANY)
            else:
                tokens.append(_STAR)
            index = end
        elif char == "?":
            tokens.append(_ONE)
            index += 1
        elif char == "[" and pattern.find("]", index + 2) != -1:
            close = pattern.find("]", index + 2)
            body = pattern[index + 1 : close]
            negated = body[:1] in ("!", "^")
            tokens.append((negated, _class_members(body[1:] if negated else body)))
            index = close + 1
        elif char == "\\" and index + 1 < len(pattern):
            tokens.append(pattern[index + 1])
            index += 2
        else:
            tokens.append(char)
            index += 1
    return tokens


def _closure(tokens: list[_Token], states: set[int]) -> set[int]:
    """`states` plus every state reachable without reading a character."""
    pending = list(states)
    result = set(states)
    while pending:
        state = pending.pop()
        if state < len(tokens) and tokens[state] in (_STAR, _ANY, _DIRS) and state + 1 not in result:
            result.add(state + 1)
            pending.append(state + 1)
    return result


def _step(tokens: list[_Token], states: set[int], char: str) -> set[int]:
    following: set[int] = set()
    for state in states:
        if state >= len(tokens):
            continue
        token = tokens[state]
        if token == _STAR:
            if char != "/":
                following.add(state)
        elif token == _ANY:
            following.add(state)
        elif token == _DIRS:
            # Inside a run of folders: any character keeps it going; a `/` may also end it.
            following.add(state)
            if char == "/":
                following.add(state + 1)
        elif token == _ONE:
            if char != "/":
                following.add(state + 1)
        elif isinstance(token, tuple):
            negated, members = token
            if char != "/" and (char in members) != negated:
                following.add(state + 1)
        elif token == char:
            following.add(state + 1)
    return _closure(tokens, following)


def _run(tokens: list[_Token], text: str) -> bool:
    states = _closure(tokens, {0})
    for char in text:
        states = _step(tokens, states, char)
        if not states:
            return False
    return len(tokens) in states


@dataclass(frozen=True)
class Pattern:
    """One git pattern: anchored at the root when it has an inner `/`, else matched against each name."""

    tokens: tuple[_Token, ...]
    anchored: bool
    directory_only: bool

    @classmethod
    def parse(cls, text: str) -> Pattern | None:
        if not text or len(text) > MAX_PATTERN_LENGTH:
            return None
        directory_only = text.endswith("/")
        text = text.rstrip("/")
        anchored = "/" in text
        text = text.lstrip("/")
        if not text:
            return None
        return cls(tuple(_tokens(text)), anchored, directory_only)

    def matches(self, path: str, is_directory: bool = False) -> bool:
        if self.directory_only and not is_directory:
            return False
        subject = path if self.anchored else path.rsplit("/", 1)[-1]
        return _run(list(self.tokens), subject)


def _lines(text: bytes) -> Iterable[str]:
    """The first `MAX_RULES` non-comment lines of the first `MAX_RULES_BYTES` bytes (complete lines only)."""
    body = text[:MAX_RULES_BYTES]
    if len(text) > MAX_RULES_BYTES:
        body = body[: body.rfind(b"\n") + 1]
    count = 0
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        count += 1
        if count > MAX_RULES:
            return
        yield line


def complete_lines(sample: bytes, size: int) -> bytes:
    """What can be read as rules from the first bytes of a file: all of it when the sample is the whole
    file, else its complete lines (the client sends only the first 512 bytes of each file to preupload)."""
    if len(sample) >= size:
        return sample
    return sample[: sample.rfind(b"\n") + 1]


@dataclass(frozen=True)
class LfsRules:
    """The `filter=lfs` rules of a `.gitattributes`: for each pattern, whether it sets or unsets LFS."""

    rules: tuple[tuple[Pattern, bool], ...] = ()

    @classmethod
    def parse(cls, text: bytes) -> LfsRules:
        rules: list[tuple[Pattern, bool]] = []
        for line in _lines(text):
            pattern_text, *attributes = line.split()
            setting: bool | None = None
            for attribute in attributes:
                if attribute == "filter=lfs":
                    setting = True
                elif attribute.startswith(("filter=", "-filter", "!filter")):
                    setting = False
            pattern = Pattern.parse(pattern_text) if setting is not None else None
            # Negative patterns are not allowed in .gitattributes; git ignores them, so do we.
            if pattern is not None and not pattern_text.startswith("!"):
                rules.append((pattern, bool(setting)))
        return cls(tuple(rules))

    def then(self, later: LfsRules) -> LfsRules:
        """These rules followed by `later` ones, which win where both match (git's last-match rule)."""
        return LfsRules(self.rules + later.rules)

    def is_lfs(self, path: str) -> bool:
        decision = False
        for pattern, setting in self.rules:
            if pattern.matches(path):
                decision = setting
        return decision


@dataclass(frozen=True)
class IgnoreRules:
    """The rules of a `.gitignore`: a file is ignored when it, or a folder above it, is excluded."""

    rules: tuple[tuple[Pattern, bool], ...] = ()

    @classmethod
    def parse(cls, text: bytes) -> IgnoreRules:
        rules: list[tuple[Pattern, bool]] = []
        for line in _lines(text):
            negated = line.startswith("!")
            pattern = Pattern.parse(line[1:] if negated else line)
            if pattern is not None:
                rules.append((pattern, not negated))
        return cls(tuple(rules))

    def _excluded(self, path: str, is_directory: bool) -> bool:
        decision = False
        for pattern, excludes in self.rules:
            if pattern.matches(path, is_directory):
                decision = excludes
        return decision

    def is_ignored(self, path: str) -> bool:
        if not self.rules:
            return False
        folders = path.split("/")[:-1]
        # git never looks inside an excluded folder, so no later rule can bring a file in it back.
        for depth in range(1, len(folders) + 1):
            if self._excluded("/".join(folders[:depth]), is_directory=True):
                return True
        return self._excluded(path, is_directory=False)
