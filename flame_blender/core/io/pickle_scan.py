"""Check a pickle's opcodes before anything is unpickled: sizes, memo indices, nesting depth.

The unpickler allocates what opcodes ask for: ``LONG_BINPUT 2**28`` makes it grow its memo to
2**28 slots (4 GiB) for a 9-byte file, a ``BINBYTES8`` length makes it allocate that many bytes
before reading them, and a tuple nested a million deep, once used as a dict key, overflows the C
stack when it is hashed. :func:`scan_pickle` walks the opcodes (the way ``pickletools.genops``
does, but skipping over the bytes of long strings instead of copying them) and refuses such a
pickle before the unpickler sees it.
"""

from __future__ import annotations

import pickletools
import struct

MAX_OPCODES = 100_000  # FLAME's pickles need a few thousand (the dynamic embedding ~3,000)
MAX_DEPTH = 100  # FLAME's pickles nest about 10 deep
MAX_LONG_BYTES = 64  # FLAME's integers fit in 8 bytes; huge ones only cost time
MAX_TEXT_LINE = 1 << 26  # protocol-0 text arguments (a masks file's arrays are ~100 KB)
# Byte strings at least this long are reported to the caller as "blobs" (offset and length) so
# the unpickler can be handed a view instead of copying them twice (see safe_pickle).
BLOB_MIN_BYTES = 4096
_BLOB_OPCODES = {"BINSTRING", "BINBYTES", "BINBYTES8"}

_LENGTH_PREFIX = {  # arguments stored as <length><bytes>: how the length is written
    pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1),
    pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
    pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4),
    pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8),
}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_REFUSED = {  # opcodes FLAME files never use and that reach outside the pickle
    "EXT1": "copyreg extension codes",
    "EXT2": "copyreg extension codes",
    "EXT4": "copyreg extension codes",
    "NEXT_BUFFER": "out-of-band buffers",
    "READONLY_BUFFER": "out-of-band buffers",
}


class PickleScanError(ValueError):
    """The pickle is malformed or exceeds a limit; nothing was unpickled."""


_PY2_STRINGS = {"BINSTRING", "SHORT_BINSTRING"}
_MEMO_INDEX = {"BINPUT": "<B", "LONG_BINPUT": "<I", "BINGET": "<B", "LONG_BINGET": "<I"}
_PY2_STRING_CODES = frozenset(ord(op.code) for op in pickletools.opcodes if op.name in _PY2_STRINGS)
_BLOB_CODES = frozenset(ord(op.code) for op in pickletools.opcodes if op.name in _BLOB_OPCODES)


def _opcode_table() -> dict[int, tuple]:
    """opcode byte -> (name, argument kind, fixed width, stack items below the mark or popped,
    takes a mark, pushes a value)."""
    table = {}
    for op in pickletools.opcodes:
        before = op.stack_before
        marked = pickletools.markobject in before
        below = before.index(pickletools.markobject) if marked else len(before)
        arg = op.arg
        if arg is None:
            kind, width = "none", 0
        elif arg.n in _LENGTH_PREFIX:
            kind, width = "counted", 0
        elif arg.n == pickletools.UP_TO_NEWLINE:
            kind, width = ("lines2" if "pair" in arg.name else "line"), 0
        else:
            kind, width = "fixed", arg.n
        table[ord(op.code)] = (op.name, kind, width, below, marked, bool(op.stack_after), arg)
    return table


_TABLE = _opcode_table()

# Fast paths for the opcodes FLAME pickles are made of (a dynamic embedding has ~7,000):
# opcode byte -> (action, argument width or length-prefix width, struct format). Everything
# else takes the general path below, which handles every opcode.
_LEAF, _COUNTED_LEAF, _PUT, _GET, _MARK, _NEST = range(6)
# Argument-less opcodes that only build values from the stack (TUPLE3, REDUCE, BUILD, ...).
_GENERAL_ONLY = {"STOP", "DUP", "MARK", "MEMOIZE", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"}
_IMMUTABLE_LEAVES = {"NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "BINFLOAT",
                     "EMPTY_TUPLE"}  # fmt: skip
_COUNTED_LEAVES = {"BINSTRING", "SHORT_BINSTRING", "BINUNICODE", "SHORT_BINUNICODE",
                   "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}  # fmt: skip


def _fast_table() -> list[tuple | None]:
    table: list[tuple | None] = [None] * 256
    for code, (name, _kind, width, _below, _marked, _pushes, arg) in _TABLE.items():
        if name in _IMMUTABLE_LEAVES:
            table[code] = (_LEAF, width, "")
        elif name in _COUNTED_LEAVES:
            fmt, prefix = _LENGTH_PREFIX[arg.n]
            table[code] = (_COUNTED_LEAF, prefix, fmt)
        elif name in ("BINPUT", "LONG_BINPUT"):
            table[code] = (_PUT, width, _MEMO_INDEX[name])
        elif name in ("BINGET", "LONG_BINGET"):
            table[code] = (_GET, width, _MEMO_INDEX[name])
        elif name == "MARK":
            table[code] = (_MARK, 0, "")
        elif _kind == "none" and name not in _GENERAL_ONLY and name not in _REFUSED:
            _, _, _, below, marked, pushes, _ = _TABLE[code]
            table[code] = (_NEST, 0, (below, marked, pushes, name in _MUTATORS))
    return table


_FAST = _fast_table()


def scan_pickle(
    data: bytes,
    start: int = 0,
    persistent_ids: bool = False,
    blobs: list[tuple[int, int, int]] | None = None,
) -> tuple[int, bool]:
    """Check the pickle that starts at ``start`` in ``data``; return the offset after its STOP
    and whether it holds Python 2 ``str`` opcodes (STRING, BINSTRING, SHORT_BINSTRING).

    ``blobs``: when given, receives ``(opcode offset, data offset, length)`` of every
    BINSTRING / BINBYTES / BINBYTES8 of at least :data:`BLOB_MIN_BYTES` outside a protocol-4
    frame (replacing one inside a frame would change the frame's length).

    Raises :class:`PickleScanError` for an unknown or truncated opcode, a memo index above the
    number of memo writes, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_OPCODES` opcodes, a length running past the data, or an opcode FLAME files
    never use (persistent ids unless ``persistent_ids``, extension codes, out-of-band buffers).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    position = start
    # A simulated stack of nesting depths; each entry is a one-element list so the memo and
    # the stack share it and in-place growth (APPEND to a memoised list) is seen by both.
    stack: list[list[int]] = []
    marks: list[int] = []
    memo: dict[int, list[int]] = {}
    puts = 0
    max_index = -1
    python2_strings = False
    frame_end = -1
    # Immutable values (numbers, strings, None) never nest anything, so they share one entry
    # (made per call: a malformed pickle that BUILDs on one can only make later depths larger).
    leaf = [0]
    push = stack.append
    unpack_from = struct.unpack_from
    fast = _FAST
    for _count in range(MAX_OPCODES):
        if position >= size:
            raise PickleScanError("the pickle ends before its STOP opcode (truncated?)")
        quick = fast[data[position]]
        if quick is not None:
            action, width, fmt = quick
            if position + 1 + width > size:
                raise PickleScanError(f"opcode at byte {position} runs past the end: truncated pickle")
            if action == _LEAF:
                position += 1 + width
                push(leaf)
                continue
            if action == _PUT:
                if not stack:
                    raise PickleScanError("memo PUT on an empty stack")
                (index,) = unpack_from(fmt, data, position + 1)
                position += 1 + width
                puts += 1
                if index > max_index:
                    max_index = index
                memo[index] = stack[-1]
                continue
            if action == _GET:
                (index,) = unpack_from(fmt, data, position + 1)
                if index not in memo:
                    raise PickleScanError(f"memo GET {index} reads a memo entry never written")
                position += 1 + width
                push(memo[index])
                continue
            if action == _MARK:
                position += 1
                marks.append(len(stack))
                continue
            if action == _NEST:  # the general path's stack effect, without its lookups
                position += 1
                below, marked, pushes, mutator = fmt
                if marked:
                    if not marks:
                        raise PickleScanError(f"{_TABLE[data[position - 1]][0]} without a MARK")
                    mark = marks.pop()
                    children = stack[mark:]
                    del stack[mark:]
                else:
                    children = []
                if below > len(stack):
                    raise PickleScanError(
                        f"{_TABLE[data[position - 1]][0]} on a stack too short (malformed pickle)"
                    )
                if below:
                    popped = stack[-below:]
                    del stack[-below:]
                else:
                    popped = []
                if not pushes:
                    continue
                if mutator:
                    target = popped[0]
                    deepest = 0
                    for node in popped[1:] + children:
                        if node[0] > deepest:
                            deepest = node[0]
                    if deepest + 1 > target[0]:
                        target[0] = deepest + 1
                elif popped or children:
                    target = [max([node[0] for node in popped + children]) + 1]
                else:
                    target = [0]
                if target[0] > MAX_DEPTH:
                    raise PickleScanError(f"nesting deeper than {MAX_DEPTH} levels")
                if len(stack) >= MAX_OPCODES:
                    raise PickleScanError("stack too large")
                push(target)
                continue
            # _COUNTED_LEAF: <length><bytes>
            opcode_at = position
            (length,) = unpack_from(fmt, data, position + 1)
            position += 1 + width
            if length < 0 or length > size - position:
                raise PickleScanError(
                    f"{_TABLE[data[opcode_at]][0]} announces {length} bytes but only "
                    f"{size - position} follow"
                )
            code = data[opcode_at]
            if code in _PY2_STRING_CODES:
                python2_strings = True
            if (blobs is not None and length >= BLOB_MIN_BYTES and code in _BLOB_CODES
                    and opcode_at >= frame_end):  # fmt: skip
                blobs.append((opcode_at, position, length))
            position += length
            push(leaf)
            continue
        entry = _TABLE.get(data[position])
        if entry is None:
            raise PickleScanError(f"unknown opcode {data[position:position + 1]!r} at byte {position}")
        name, kind, width, below, marked, pushes, arg = entry
        opcode_at = position
        position += 1
        index = None
        if kind == "fixed":
            if position + width > size:
                raise PickleScanError(f"{name} at the end of the data: truncated pickle")
            if name in _MEMO_INDEX:
                (index,) = struct.unpack_from(_MEMO_INDEX[name], data, position)
            elif name == "FRAME":
                frame_end = position + width + struct.unpack_from("<Q", data, position)[0]
            position += width
        elif kind == "counted":
            fmt, width = _LENGTH_PREFIX[arg.n]
            if position + width > size:
                raise PickleScanError(f"{name} at the end of the data: truncated pickle")
            (length,) = struct.unpack_from(fmt, data, position)
            position += width
            if length < 0 or length > size - position:
                raise PickleScanError(
                    f"{name} announces {length} bytes but only {size - position} follow"
                )
            python2_strings = python2_strings or name in _PY2_STRINGS
            if name in ("LONG1", "LONG4") and length > MAX_LONG_BYTES:
                raise PickleScanError(f"{name} integer of {length} bytes; FLAME files use <= 8")
            if (blobs is not None and length >= BLOB_MIN_BYTES and name in _BLOB_OPCODES
                    and opcode_at >= frame_end):  # fmt: skip
                blobs.append((opcode_at, position, length))
            position += length
        elif kind in ("line", "lines2"):
            # Text arguments (protocol 0) are parsed by the unpickler itself; only memo
            # indices are needed here, and integers must stay short.
            first = position
            for _ in range(2 if kind == "lines2" else 1):
                end = data.find(b"\n", position, position + MAX_TEXT_LINE)
                if end < 0:
                    raise PickleScanError(f"{name} text argument without an end of line")
                position = end + 1
            python2_strings = python2_strings or name == "STRING"
            if name in ("INT", "LONG") and position - first > MAX_LONG_BYTES:
                raise PickleScanError(f"{name} of {position - first} digits; FLAME files use <= 20")
            if name in ("PUT", "GET"):
                text = data[first : position - 1].strip()
                if not text.isdigit() or len(text) > 12:
                    raise PickleScanError(f"{name} index {text[:20]!r} is not a small number")
                index = int(text)
        if name in _REFUSED:
            raise PickleScanError(f"opcode {name} ({_REFUSED[name]}) is not allowed")
        if name == "STOP":
            if len(stack) != 1 or marks:
                raise PickleScanError("STOP with an unbalanced stack")
            break
        if name in _PUTS:
            if name == "MEMOIZE":
                index = len(memo)
            if not stack:
                raise PickleScanError(f"{name} on an empty stack")
            puts += 1
            max_index = max(max_index, index)
            memo[index] = stack[-1]
            continue
        if name in _GETS:
            if index not in memo:
                raise PickleScanError(f"{name} {index} reads a memo entry never written")
            stack.append(memo[index])
            continue
        if name == "MARK":
            marks.append(len(stack))
            continue
        if name in ("PERSID", "BINPERSID") and not persistent_ids:
            raise PickleScanError("persistent ids are not allowed in this pickle")
        if name == "DUP":
            if not stack:
                raise PickleScanError("DUP on an empty stack")
            stack.append(stack[-1])
            continue
        children: list[list[int]] = []
        if marked:
            if not marks:
                raise PickleScanError(f"{name} without a MARK")
            mark = marks.pop()
            children = stack[mark:]
            del stack[mark:]
        if below > len(stack):
            raise PickleScanError(f"{name} on a stack too short (malformed pickle)")
        popped = stack[len(stack) - below :] if below else []
        if below:
            del stack[len(stack) - below :]
        if not pushes:
            continue
        if name in _MUTATORS:
            target = popped[0]
            deepest = max((node[0] for node in popped[1:] + children), default=0)
            target[0] = max(target[0], deepest + 1)
        elif popped or children:
            target = [max(node[0] for node in popped + children) + 1]
        else:
            target = [0]
        if target[0] > MAX_DEPTH:
            raise PickleScanError(f"nesting deeper than {MAX_DEPTH} levels")
        if len(stack) >= MAX_OPCODES:
            raise PickleScanError("stack too large")
        stack.append(target)
    else:
        raise PickleScanError(f"more than {MAX_OPCODES} opcodes; FLAME files use far fewer")
    if max_index > puts:
        raise PickleScanError(
            f"memo index {max_index} is above the {puts} memo writes; a real pickler never "
            "leaves such gaps (it would make the unpickler allocate a huge memo)"
        )
    return position, python2_strings
