"""Measuring a pickle before it is unpickled: how deeply its objects nest and how much memory building them
takes, from its opcodes alone, so that kdtrack.safe_pickle refuses what would crash the process or exhaust
its memory before anything is built.

Python's C unpickler builds what a file says without bounds: hashing a dict key that is a tuple nested
200,000 deep overflows the C stack (a crash, no message), and a 9-byte file that memoizes one object at
index 2**27 makes it allocate and zero 2 GB. The walk keeps, for each object on the unpickler's stack and in
its memo, only its nesting depth and how many bytes of text it holds, and adds up what the unpickler will
hold: every object it builds, its stack, marks and memo. The opcode table is pickletools'; its own walker
(genops) decodes every argument and is four times slower.
"""
from __future__ import annotations

import itertools
import pickle
import pickletools
from dataclasses import dataclass

MAX_DEPTH = 100
"""How deeply a file's objects may nest. numpy's array pickles nest 5 deep inside a dict of arrays,
CIFAR-100's files 4; hashing a tuple recurses in C without a limit, and 100,000 levels crash it."""
MAX_COST_PER_BYTE = 16
"""The memory a file may make the unpickler use, per byte of the file, beyond MIN_BUDGET. The real files
take 1 to 2 (their arrays' bytes, as read and as a call's arguments), CIFAR-100's lists of names up to 12."""
MIN_BUDGET = 2**20

_EMPTY = {"EMPTY_LIST": 72, "EMPTY_DICT": 80, "EMPTY_SET": 232, "EMPTY_TUPLE": 0, "LIST": 72, "DICT": 80,
          "FROZENSET": 232, "TUPLE": 56, "TUPLE1": 56, "TUPLE2": 56, "TUPLE3": 56}
"""What each opcode that makes a container costs for the container alone (CPython's sizes, GC header included)."""
_ITEM = {"LIST": 16, "TUPLE": 8, "TUPLE1": 8, "TUPLE2": 8, "TUPLE3": 8, "DICT": 64, "FROZENSET": 64, "APPEND": 16,
         "APPENDS": 16, "SETITEM": 64, "SETITEMS": 64, "ADDITEMS": 64}
"""What each item put in a container costs: a list's pointer (lists grow 1.125 times at a time), a dict's or
set's entry and index."""
_TEXT = {"STRING": 1, "BINSTRING": 1, "SHORT_BINSTRING": 1, "BINBYTES": 1, "SHORT_BINBYTES": 1, "BINBYTES8": 1,
         "BYTEARRAY8": 1, "UNICODE": 4, "BINUNICODE": 4, "SHORT_BINUNICODE": 4, "BINUNICODE8": 4}
"""Bytes in memory per byte of a text opcode's data (a str can take 4 per character), beyond _OBJECT."""
_CALLS = ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "BUILD")
_OBJECT = 128
"""An object that is not a container: a number, a string's header, a call's result."""
_FREE = ("NONE", "NEWTRUE", "NEWFALSE", "BININT1", "GLOBAL", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4", "PROTO",
         "FRAME", "POP", "POP_MARK", "STOP", "NEXT_BUFFER", "READONLY_BUFFER", "PERSID", "BINPERSID")
"""Opcodes that build nothing new: singletons, cached small ints, what the unpickler looks up or refuses."""


class TooCostly(Exception):
    """A pickle nests too deeply or would take too much memory to load (the message says which)."""


MARK, PUT, MEMOIZE, GET, DUP, STOP, NEW, FILL, CALL, TEXT, OTHER = range(11)
"""What an opcode does, as the walk sees it."""


@dataclass(frozen=True)
class _Op:
    name: str
    kind: int
    argument: int
    """pickletools' layout of the argument: a fixed byte count, or one of its variable-length markers."""
    lines: int
    """How many newline-ended lines a text argument has (GLOBAL and INST: module and name)."""
    sliced: bool
    """Whether it takes the objects above the last mark."""
    below: int
    """How many objects it takes below the mark (or in all, without one)."""
    pushed: int
    cost: int
    """What it allocates, in bytes: for a container, itself empty; for a call or text, beyond what it is given."""
    per_item: int
    """For a container, what each item it takes costs; for a text, each byte of its data."""


def _kind(name: str) -> int:
    fixed = {"MARK": MARK, "MEMOIZE": MEMOIZE, "DUP": DUP, "STOP": STOP, "PUT": PUT, "BINPUT": PUT,
             "LONG_BINPUT": PUT, "GET": GET, "BINGET": GET, "LONG_BINGET": GET}
    if name in fixed:
        return fixed[name]
    if name in _EMPTY:
        return NEW
    if name in _ITEM:
        return FILL
    return CALL if name in _CALLS else TEXT if name in _TEXT else OTHER


def _table() -> list[_Op | None]:
    table: list[_Op | None] = [None] * 256
    for info in pickletools.opcodes:
        name, before = info.name, info.stack_before
        sliced = pickletools.stackslice in before
        kind = _kind(name)
        cost = _EMPTY.get(name, 0 if kind in (NEW, FILL) or name in _FREE else _OBJECT)
        table[ord(info.code)] = _Op(name, kind, info.arg.n if info.arg else 0,
                                    2 if info.arg is pickletools.stringnl_noescape_pair else 1, sliced,
                                    before.index(pickletools.markobject) if sliced else len(before),
                                    len(info.stack_after), cost, _ITEM.get(name, _TEXT.get(name, 0)))
    return table


_OPS = _table()
_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
_PLAIN = (0, 0)
_CHECK_EVERY = 4096
"""Opcodes between checks of the budget: the walk's own stack grows by at most one object per opcode."""


def scan(raw: bytes) -> None:
    """Walk `raw`'s opcodes up to its STOP as the unpickler will. TooCostly when its objects nest deeper than
    MAX_DEPTH or would take more than MAX_COST_PER_BYTE bytes of memory per byte of the file; a
    pickle.UnpicklingError when it is malformed. A tuple's depth is exact (its items are fixed when it is
    built); a list or dict changed after it was memoized can nest deeper than counted, which is harmless:
    only a tuple's hash recurses without Python's recursion limit."""
    limit = max(MIN_BUDGET, MAX_COST_PER_BYTE * len(raw))
    stack: list[tuple[int, int]] = []  # (depth, bytes of text) of each object; a tuple's text is its strings'
    marks: list[int] = []
    memo: list[tuple[int, int] | None] = []
    built = position = 0
    for count in itertools.count():
        op, argument, position = _next(raw, position)
        kind = op.kind
        if kind == MARK:
            marks.append(len(stack))
        elif kind == PUT or kind == MEMOIZE:
            index = len(memo) if kind == MEMOIZE else argument
            if index >= len(memo):
                _check(built, stack, marks, index + 1, limit)  # before the memo grows to `index`
                memo.extend([None] * (index + 1 - len(memo)))
            memo[index] = _top(stack, op.name)
        elif kind == GET:
            if argument >= len(memo) or memo[argument] is None:
                raise pickle.UnpicklingError(f"memo entry {argument} is read before it is written")
            stack.append(memo[argument])
        elif kind == DUP:
            stack.append(_top(stack, op.name))
        else:
            taken = _take(stack, marks, op)
            cost, result = _build(op, argument, taken)
            built += cost
            if kind == STOP:
                _check(built, stack, marks, len(memo), limit)
                return
            if op.pushed:
                stack.append(result)
        if count % _CHECK_EVERY == 0:
            _check(built, stack, marks, len(memo), limit)


def _next(raw: bytes, position: int) -> tuple[_Op, int, int]:
    """The opcode at `position`, its argument (a memo index, or the length of its data) and where the next
    opcode starts."""
    if position >= len(raw):
        raise pickle.UnpicklingError("the data ends before the pickle's STOP opcode")
    op = _OPS[raw[position]]
    if op is None:
        raise pickle.UnpicklingError(f"invalid opcode {raw[position]:#04x} at byte {position}")
    position += 1
    layout = op.argument
    if layout >= 0:  # fixed size: memo indices are the only values read
        end = position + layout
        argument = int.from_bytes(raw[position:end], "little") if op.kind == PUT or op.kind == GET else layout
    elif layout == pickletools.UP_TO_NEWLINE:
        end = position
        for _ in range(op.lines):
            end = raw.find(b"\n", end) + 1
            if end == 0:
                raise pickle.UnpicklingError(f"{op.name} at byte {position - 1} lacks its newline")
        line = raw[position:end - 1]
        argument = _index(line, op.name) if op.kind == PUT or op.kind == GET else len(line)
    else:
        size, signed = _LENGTH_BYTES[layout]
        argument = int.from_bytes(raw[position:position + size], "little", signed=signed)
        if argument < 0:
            raise pickle.UnpicklingError(f"{op.name} at byte {position - 1} has a negative length")
        end = position + size + argument
    if end > len(raw):
        raise pickle.UnpicklingError(f"the data ends inside {op.name} at byte {position - 1}")
    return op, argument, end


def _index(line: bytes, name: str) -> int:
    try:
        index = int(line)
    except ValueError:
        raise pickle.UnpicklingError(f"{name} needs a memo index, got {line[:20]!r}") from None
    if index < 0:
        raise pickle.UnpicklingError(f"{name} of negative memo index {index}")
    return index


def _top(stack: list[tuple[int, int]], name: str) -> tuple[int, int]:
    if not stack:
        raise pickle.UnpicklingError(f"{name} on an empty stack")
    return stack[-1]


def _take(stack: list[tuple[int, int]], marks: list[int], op: _Op) -> list[tuple[int, int]]:
    """The objects `op` takes off the stack, bottom first: a container being filled, then the objects above
    the last mark if it takes them."""
    height = len(stack)
    if op.sliced:
        if not marks:
            raise pickle.UnpicklingError(f"{op.name} without a mark")
        height = marks.pop()
    if height < op.below:
        raise pickle.UnpicklingError(f"{op.name} on a stack of {height}")
    taken = stack[height - op.below:]
    del stack[height - op.below:]
    return taken


def _build(op: _Op, argument: int, taken: list[tuple[int, int]]) -> tuple[int, tuple[int, int]]:
    """What the unpickler allocates for `op` (in bytes) and what it pushes, from what it took."""
    kind = op.kind
    if kind == NEW or kind == FILL:
        depth, added = (taken[0][0], taken[1:]) if kind == FILL else (0, taken)
        text = sum(size for item_depth, size in added if item_depth == 0) if op.name.startswith("TUPLE") else 0
        return op.cost + op.per_item * len(added), (_deeper(depth, added), text)
    if kind == CALL:  # a call may copy the text it is given (_codecs.encode does), as its arguments
        return op.cost + sum(size for _, size in taken), (_deeper(0, taken), 0)
    if kind == TEXT:
        return op.cost + op.per_item * argument, (0, argument)
    return op.cost + (argument if op.cost else 0), _PLAIN


def _deeper(depth: int, items: list[tuple[int, int]]) -> int:
    """The depth of a container of `items` that was `depth` deep."""
    depth = max(depth, 1 + max((item_depth for item_depth, _ in items), default=0))
    if depth > MAX_DEPTH:
        raise TooCostly(f"its objects nest more than {MAX_DEPTH} levels deep, where a dict of numpy arrays needs 5")
    return depth


def _check(built: int, stack: list, marks: list, memo: int, limit: int) -> None:
    """Whether what the unpickler holds stays within `limit`: what it built, its stack, marks and memo (an
    array of pointers that grows twice as large as the highest index)."""
    if built + 8 * len(stack) + 8 * len(marks) + 16 * memo > limit:
        raise TooCostly(f"loading it would take more than {limit:,} bytes of memory ({MAX_COST_PER_BYTE} per byte "
                        "of the file), which no data file needs")
