"""The sha256 of each uploader's xorbs in the order their uploads began, computed while later ones arrive.

A shard claims a sha256 for every file it registers, and the hub checks the claim by hashing the file's
bytes from its stored xorbs. Done when the shard arrives, that is a serial tail: one core hashes the whole
file while the client waits (about 0.45 s per 512 MiB here), after the client has spent its time sending
xorbs, during which the hub had a core to spare. So each uploader's xorbs are hashed, in the order their
uploads began (the order the client makes them in: it packs a file's chunks into xorbs front to back), by
one background thread as soon as each is stored, and the hash state after each xorb is kept. A file whose
terms begin with the first whole xorbs of that sequence, as a single file's upload does, then needs only its
remaining terms hashed when the shard comes. The client's last, short xorb often begins its upload before
the full one ahead of it: that tail moves behind the xorbs begun after it while it can (`_tail_to_move`), so
the sequence keeps the file's order and the shard usually finds the whole file hashed.

A xorb whose upload begins once every xorb before it in the sequence is hashed (the client sends one xorb
after another: each begins as the last is answered) is hashed as it arrives instead, from the chunks the
parser has just checked (`began` hands it the running hash): nothing is read back, and the sequence's hash is
complete as soon as its last xorb is stored. One that began earlier (the client sends two at once when the
hub keeps up) asks again with each batch that arrives, and takes the hash over once the xorbs ahead of it are
hashed (`claim`): it reads back the chunks it has received so far from its own scratch file and hashes the
rest as they come. Only a xorb stored before it could do so is read back from storage, by the background
thread.

Nothing is taken on trust: the digest is computed by the hub over the stored bytes, exactly as the check at
the shard would (`ContentStore.sha256_of`), or over the same bytes as they arrived, each chunk checked
against its hash first, and compared with the claim the same way. Any other shape (a file
that starts inside a xorb, xorbs stored earlier and not sent again, uploads spread over several server
processes, xorbs whose uploads began out of order, a failed xorb upload) falls back to hashing at the shard.
Memory is one read window per process and a few hashes per xorb; the number of uploaders tracked and of xorbs
per uploader are bounded, and an uploader's sequence ends with its next shard. Several files uploaded at once
(`upload_folder`) interleave their xorbs, so a sequence stops as soon as the client shows it is cleaning a
second file (see `queried`), which bounds what is hashed for nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from weightyard.repos.content import ContentStore
from weightyard.xet import READ_WINDOW, FileTerm, XorbInfo, is_global_dedup_eligible
from weightyard.xet.xorb import MAX_CHUNK_LEN, MAX_XORB_CHUNKS, MAX_XORB_RAW_LEN

# Uploaders followed at once (the least recently active is dropped), and xorbs followed per uploader
# (64 MiB each: 256 GiB of one upload, past which the shard hashes the file itself).
MAX_UPLOADERS = 64
MAX_XORBS = 4096
# How long a shard waits for the background hash to reach the end of its file before hashing it itself:
# the background is at most a few xorbs behind, each hashed in well under a second.
CATCH_UP_S = 30.0
# The client closes a xorb when the next chunk would take it past 64 MiB or 8192 chunks, or at the end of the
# file: a xorb of fewer bytes and chunks than that is a file's tail.
FULL_XORB_RAW_LEN = MAX_XORB_RAW_LEN - MAX_CHUNK_LEN


def _is_tail(info: XorbInfo) -> bool:
    return len(info.chunks) < MAX_XORB_CHUNKS and info.raw_len <= FULL_XORB_RAW_LEN


@dataclass
class _Slot:
    xorb_hash: bytes
    info: XorbInfo | None = None  # set once the xorb is stored
    inline: bool = False  # hashed as it arrives, by its upload


@dataclass
class _Sequence:
    slots: list[_Slot] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)  # the sha256 state after slots[0..i], each hashed i
    state: Any = field(default_factory=hashlib.sha256)
    starts: set[bytes] = field(default_factory=set)  # first chunks of files the client asked about
    broken: bool = False
    hashing: bool = False


class ArrivalHashes:
    """Per uploader, the running sha256 of its xorbs in upload order (module docstring)."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self._sequences: OrderedDict[int, _Sequence] = OrderedDict()
        self._ending: list[_Sequence] = []  # sequences a shard is waiting on
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None

    def began(self, user_id: int, xorb_hash: bytes) -> Callable[[bytes | memoryview], object] | None:
        """A xorb upload by `user_id` began (its place in the sequence is taken now). Where every xorb before
        it is hashed already, the upload hashes its own chunks, in order, as they arrive: the function it is
        handed for that; None otherwise (the background thread reads it back once it is stored)."""
        with self._changed:
            sequence = self._active(user_id)
            if len(sequence.slots) >= MAX_XORBS:
                sequence.broken = True
            if sequence.broken:
                return None
            # No later xorb can take the running hash before this one is stored: its states are not all there.
            # A file's tail that began before this one (and is stored) stays behind it.
            place = len(sequence.slots)
            if _tail_to_move(sequence, place - 1):
                place -= 1
            slot = _Slot(xorb_hash, inline=len(sequence.states) == place)
            sequence.slots.insert(place, slot)
            return sequence.state.update if slot.inline else None

    def queried(self, user_id: int, chunk_hash: bytes) -> None:
        """`user_id` asked whether the hub holds a chunk. The client asks about a file's first chunk and about
        chunks whose hash makes them eligible (one in 1024): a query about any other chunk is a file starting.
        A second one means several files are uploaded at once, and the client cleans them in parallel, each
        into xorbs of its own whose uploads interleave: no file is the sequence's beginning, so nothing more
        is hashed ahead (it would all be hashed twice)."""
        if is_global_dedup_eligible(chunk_hash):
            return
        with self._changed:
            sequence = self._active(user_id)
            sequence.starts.add(chunk_hash)
            if len(sequence.starts) > 1:
                sequence.broken = True

    def claim(self, user_id: int, xorb_hash: bytes) -> Callable[[bytes | memoryview], object] | None:
        """The upload of `xorb_hash`, which began before every xorb ahead of it was hashed, asks again as it
        arrives: once they all are, it takes the running hash (the function it is handed), hashes the
        chunks it has received so far, then the rest as they come; None while it cannot (or never will)."""
        with self._changed:
            sequence = self._sequences.get(user_id)
            if sequence is None or sequence.broken:
                return None
            for index, slot in enumerate(sequence.slots):
                if slot.xorb_hash == xorb_hash and slot.info is None and not slot.inline:
                    if index != len(sequence.states):
                        return None
                    slot.inline = True
                    update: Callable[[bytes | memoryview], object] = sequence.state.update
                    return update
            return None

    def _active(self, user_id: int) -> _Sequence:
        """The user's current sequence (a new one if none), marked most recently active; under the lock."""
        sequence = self._sequences.pop(user_id, None) or _Sequence()
        self._sequences[user_id] = sequence
        while len(self._sequences) > MAX_UPLOADERS:
            self._sequences.popitem(last=False)
        return sequence

    def stored(self, user_id: int, xorb_hash: bytes, info: XorbInfo) -> None:
        """The xorb is stored and verified: it may be hashed once every xorb before it is."""
        with self._changed:
            sequence = self._sequences.get(user_id)
            if sequence is None or sequence.broken:
                return
            for index, slot in enumerate(sequence.slots):
                if slot.xorb_hash == xorb_hash and slot.info is None:
                    slot.info = info
                    if _tail_to_move(sequence, index):
                        # The file's tail, stored while xorbs begun after it are still arriving: those come
                        # before it in the file, so it goes to the end, to be hashed after them.
                        sequence.slots.append(sequence.slots.pop(index))
                    elif slot.inline:
                        # Hashed whole as it arrived (`began`), every xorb before it first.
                        if len(sequence.states) != index:
                            sequence.broken = True
                        else:
                            sequence.states.append(sequence.state.copy())
                    break
            self._start_worker()
            self._changed.notify_all()

    def failed(self, user_id: int, xorb_hash: bytes) -> None:
        """The xorb upload failed: the sequence has a hole, so it serves no shard."""
        with self._changed:
            sequence = self._sequences.get(user_id)
            if sequence is not None and any(slot.xorb_hash == xorb_hash for slot in sequence.slots):
                sequence.broken = True
                self._changed.notify_all()

    def take(self, user_id: int, terms: Sequence[FileTerm]) -> str | None:
        """End `user_id`'s sequence (a shard arrived) and return the sha256 of the file made of `terms` if
        they begin with the sequence's first xorbs, whole and in order: the running hash after those (waited
        for, bounded) continued over the rest of the file. None when no xorb of the file was hashed ahead:
        the caller hashes the file itself."""
        deadline = time.monotonic() + CATCH_UP_S
        with self._changed:
            sequence = self._sequences.pop(user_id, None)
            if sequence is None:
                return None
            prefix = _prefix(sequence, terms)
            if not prefix:
                sequence.broken = True
                return None
            self._ending.append(sequence)  # the worker goes on hashing it
            try:
                while not sequence.broken and len(sequence.states) < prefix:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                # Where the background did not get that far (a failure, the deadline), the rest is hashed now.
                prefix = min(prefix, len(sequence.states))
                state = sequence.states[prefix - 1].copy() if prefix else None
            finally:
                sequence.broken = True
                self._ending.remove(sequence)
        if state is None:
            return None
        if prefix < len(terms):
            for piece in self._store.file_pieces(tuple(terms[prefix:]), bytearray(READ_WINDOW)):
                state.update(piece)
        return str(state.hexdigest())

    # ------------------------------------------------------------------ the background hash

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="xet-arrival-sha256", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        window = bytearray(READ_WINDOW)
        while True:
            with self._changed:
                work = self._next()
                while work is None:
                    self._changed.wait()
                    work = self._next()
                sequence, slot = work
                sequence.hashing = True
            try:
                assert slot.info is not None
                term = FileTerm(slot.xorb_hash, slot.info.raw_len, 0, len(slot.info.chunks))
                for piece in self._store.file_pieces((term,), window):
                    sequence.state.update(piece)
                after = sequence.state.copy()
            except Exception:
                after = None  # a damaged or collected xorb: the shard's own check will say so
            with self._changed:
                sequence.hashing = False
                if after is None:
                    sequence.broken = True
                else:
                    sequence.states.append(after)
                self._changed.notify_all()

    def _next(self) -> tuple[_Sequence, _Slot] | None:
        for sequence in [*self._sequences.values(), *self._ending]:
            if sequence.broken or sequence.hashing:
                continue
            index = len(sequence.states)
            if index < len(sequence.slots) and sequence.slots[index].info is not None:
                return sequence, sequence.slots[index]
        return None


def _tail_to_move(sequence: _Sequence, index: int) -> bool:
    """Whether the xorb at `index` is a single file's tail that began before xorbs that precede it in the
    file (the stock client often starts the short last xorb before the full one ahead of it), and can still
    move behind them: stored, short, not hashed yet, and the only short one of the sequence so far (a
    single file's xorbs are all full but its last). A wrong guess costs only the hashing at the shard
    (`take` matches the file's terms against the order); a right one leaves the shard nothing to hash."""
    if not 0 <= index < len(sequence.slots) or sequence.broken or len(sequence.states) > index:
        return False
    if sequence.hashing and len(sequence.states) == index:
        return False  # the background is hashing it now
    slot = sequence.slots[index]
    if slot.info is None or slot.inline or not _is_tail(slot.info):
        return False
    others = sequence.slots[:index] + sequence.slots[index + 1 :]
    return not any(other.info is not None and _is_tail(other.info) for other in others)


def _prefix(sequence: _Sequence, terms: Sequence[FileTerm]) -> int:
    """How many of `terms`, from the first, are the sequence's first xorbs, each whole and stored."""
    count = 0
    for term, slot in zip(terms, sequence.slots, strict=False):
        if slot.info is None or term.xorb_hash != slot.xorb_hash:
            break
        if (term.chunk_start, term.chunk_end) != (0, len(slot.info.chunks)):
            break
        count += 1
    return 0 if sequence.broken else count
