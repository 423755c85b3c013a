"""Check a pickle's opcodes before anything is unpickled: sizes, memo indices, nesting depth.

The unpickler allocates what opcodes ask for: ``LONG_BINPUT 2**28`` makes it grow its memo to
2**28 slots (4 GiB) for a 9-byte file, a ``BINBYTES8`` length makes it allocate that many bytes
before reading them, and a tuple nested a million deep, once used as a dict key, overflows the C
stack when it is hashed. :func:`scan_pickle` walks the opcodes (the way ``pickletools.genops``
does, but skipping over the bytes of long strings instead of copying them) and refuses such a
pickle before the unpickler sees it.
"""

from __future__ import annotations

import io
import pickletools
import struct

MAX_OPCODES = 2_000_000  # FLAME's largest pickles (masks, protocol 0) need about 2,000
MAX_DEPTH = 100  # FLAME's pickles nest about 10 deep
MAX_LONG_BYTES = 64  # FLAME's integers fit in 8 bytes; huge ones only cost time
MAX_TEXT_LINE = 1 << 26  # protocol-0 text arguments (a masks file's arrays are ~100 KB)

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


def _read_argument(stream: io.BytesIO, op: pickletools.OpcodeInfo, size: int):
    arg = op.arg
    if arg is None:
        return None
    prefix = _LENGTH_PREFIX.get(arg.n)
    if prefix is not None:
        fmt, width = prefix
        head = stream.read(width)
        if len(head) != width:
            raise PickleScanError(f"{op.name} at the end of the data: truncated pickle")
        (length,) = struct.unpack(fmt, head)
        if length < 0 or length > size - stream.tell():
            raise PickleScanError(
                f"{op.name} announces {length} bytes but only {size - stream.tell()} follow"
            )
        if op.name in ("LONG1", "LONG4") and length > MAX_LONG_BYTES:
            raise PickleScanError(f"{op.name} integer of {length} bytes; FLAME files use <= 8")
        stream.seek(length, io.SEEK_CUR)
        return length
    if arg.n == pickletools.UP_TO_NEWLINE:
        # Text arguments (protocol 0) are read raw: the unpickler parses them itself; only
        # memo indices are needed here, and integers must stay short.
        lines = [stream.readline() for _ in range(2 if "pair" in arg.name else 1)]
        if not all(line.endswith(b"\n") for line in lines):
            raise PickleScanError(f"{op.name} text argument runs to the end of the data")
        if any(len(line) > MAX_TEXT_LINE for line in lines):
            raise PickleScanError(f"{op.name} text argument longer than {MAX_TEXT_LINE} bytes")
        if op.name in ("INT", "LONG") and len(lines[0]) > MAX_LONG_BYTES:
            raise PickleScanError(f"{op.name} of {len(lines[0])} digits; FLAME files use <= 20")
        if op.name in ("PUT", "GET"):
            text = lines[0].strip()
            if not text.isdigit() or len(text) > 12:
                raise PickleScanError(f"{op.name} index {text[:20]!r} is not a small number")
            return int(text)
        return None
    return arg.reader(stream)


def scan_pickle(data: bytes | memoryview, start: int = 0, persistent_ids: bool = False) -> int:
    """Check the pickle that starts at ``start`` in ``data``; return the offset after its STOP.

    Raises :class:`PickleScanError` for an unknown or truncated opcode, a memo index above the
    number of memo writes, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_OPCODES` opcodes, a length running past the data, or an opcode FLAME files
    never use (persistent ids unless ``persistent_ids``, extension codes, out-of-band buffers).
    """
    stream = io.BytesIO(data)
    size = memoryview(data).nbytes
    stream.seek(start)
    # A simulated stack of nesting depths; each entry is a one-element list so the memo and
    # the stack share it and in-place growth (APPEND to a memoised list) is seen by both.
    stack: list[list[int]] = []
    marks: list[int] = []
    memo: dict[int, list[int]] = {}
    puts = 0
    max_index = -1
    count = 0
    while True:
        code = stream.read(1)
        if not code:
            raise PickleScanError("the pickle ends before its STOP opcode (truncated?)")
        op = pickletools.code2op.get(code.decode("latin1"))
        if op is None:
            raise PickleScanError(f"unknown opcode {code!r} at byte {stream.tell() - 1}")
        count += 1
        if count > MAX_OPCODES:
            raise PickleScanError(f"more than {MAX_OPCODES} opcodes; FLAME files use far fewer")
        if op.name in _REFUSED:
            raise PickleScanError(f"opcode {op.name} ({_REFUSED[op.name]}) is not allowed")
        if op.name in ("PERSID", "BINPERSID") and not persistent_ids:
            raise PickleScanError("persistent ids are not allowed in this pickle")
        try:
            arg = _read_argument(stream, op, size)
        except PickleScanError:
            raise
        except Exception as error:  # pickletools' readers: ValueError, UnicodeError...
            raise PickleScanError(f"bad {op.name} argument ({type(error).__name__})") from None
        if op.name == "STOP":
            if len(stack) != 1 or marks:
                raise PickleScanError("STOP with an unbalanced stack")
            break
        if op.name in _PUTS:
            index = len(memo) if op.name == "MEMOIZE" else arg
            if not isinstance(index, int) or index < 0:
                raise PickleScanError(f"{op.name} with a bad memo index")
            puts += 1
            max_index = max(max_index, index)
            if not stack:
                raise PickleScanError(f"{op.name} on an empty stack")
            memo[index] = stack[-1]
            continue
        if op.name in _GETS:
            if arg not in memo:
                raise PickleScanError(f"{op.name} {arg!r} reads a memo entry never written")
            stack.append(memo[arg])
            continue
        if op.name == "MARK":
            marks.append(len(stack))
            continue
        if op.name == "DUP":
            if not stack:
                raise PickleScanError("DUP on an empty stack")
            stack.append(stack[-1])
            continue
        before = op.stack_before
        children: list[list[int]] = []
        if pickletools.markobject in before:
            if not marks:
                raise PickleScanError(f"{op.name} without a MARK")
            mark = marks.pop()
            children = stack[mark:]
            del stack[mark:]
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        if below > len(stack):
            raise PickleScanError(f"{op.name} on a stack too short (malformed pickle)")
        popped = stack[len(stack) - below :] if below else []
        del stack[len(stack) - below :]
        if op.name == "POP_MARK" or not op.stack_after:
            continue
        deepest = max((node[0] for node in popped[1:] + children), default=0)
        if op.name in _MUTATORS:
            target = popped[0]
            target[0] = max(target[0], deepest + 1)
        else:
            deepest = max((node[0] for node in popped + children), default=-1)
            target = [deepest + 1]
        if target[0] > MAX_DEPTH:
            raise PickleScanError(f"nesting deeper than {MAX_DEPTH} levels")
        stack.append(target)
    if max_index > puts:
        raise PickleScanError(
            f"memo index {max_index} is above the {puts} memo writes; a real pickler never "
            "leaves such gaps (it would make the unpickler allocate a huge memo)"
        )
    return stream.tell()
