"""A small strict PLY reader for FLAME-topology meshes (RingNet ``FLAME_sample.ply``, TF_FLAME
``template.ply``, meshes saved by trimesh or plyfile), read as a :class:`TemplateMesh`.

Supported: ``format ascii 1.0`` and ``format binary_little_endian 1.0``; a ``vertex`` element
with ``x``, ``y``, ``z`` (any numeric type; other properties such as normals or colours are
read and dropped); a ``face`` element whose ``vertex_indices`` (or ``vertex_index``) list holds
triangles; other elements are skipped. Everything is checked against the file's real size
before anything is allocated, and every failure is a ``FlameFileError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FlameFileError
from .reader_guard import file_reader
from .safe_pickle import read_file_bytes
from .texture_io import TemplateMesh

MAX_HEADER_BYTES = 65_536
MAX_ELEMENTS = 1 << 24  # vertices or faces; FLAME has 5023 and 9976
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.properties: list[tuple[str, str, str | None]] = []  # (name, type, list count type)


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if not data.startswith((b"ply\n", b"ply\r\n")) or end < 0:
        raise FlameFileError(path, "is not a PLY file (no 'ply' line or no 'end_header' in "
                             f"the first {MAX_HEADER_BYTES} bytes)")  # fmt: skip
    line_end = data.find(b"\n", end)
    if line_end < 0:
        raise FlameFileError(path, "ends right after 'end_header' without a newline")
    text = data[:end].decode("ascii", errors="replace")
    fmt = None
    elements: list[_Element] = []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        problem = f"header line {number} {line.strip()[:60]!r}"
        if words[0] == "format" and len(words) == 3:
            fmt = words[1]
            if fmt not in ("ascii", "binary_little_endian") or words[2] != "1.0":
                raise FlameFileError(path, f"{problem}: only 'ascii 1.0' and "
                                     "'binary_little_endian 1.0' PLY files are read")  # fmt: skip
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            count = int(words[2])
            if count > MAX_ELEMENTS:
                raise FlameFileError(path, f"{problem}: more than {MAX_ELEMENTS} elements")
            elements.append(_Element(words[1], count))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _TYPES:
            elements[-1].properties.append((words[2], _TYPES[words[1]], None))
        elif (words[0] == "property" and elements and len(words) == 5 and words[1] == "list"
              and words[2] in _TYPES and words[3] in _TYPES and _TYPES[words[2]][0] == "u"):  # fmt: skip
            elements[-1].properties.append((words[4], _TYPES[words[3]], _TYPES[words[2]]))
        else:
            raise FlameFileError(path, f"{problem} is not a PLY header line this reader knows")
    if fmt is None:
        raise FlameFileError(path, "has no 'format' line")
    return fmt, elements, line_end + 1


def _vertices(path: Path, element: _Element, rows: dict[str, np.ndarray]) -> np.ndarray:
    missing = [axis for axis in "xyz" if axis not in rows]
    if missing:
        raise FlameFileError(path, f"vertex element has no property {', '.join(missing)}")
    vertices = np.stack([rows[axis] for axis in "xyz"], axis=1).astype(np.float64)
    if not np.isfinite(vertices).all():
        raise FlameFileError(path, "holds NaN/inf vertex coordinates")
    return vertices


def _read_binary(path: Path, data: bytes, start: int, elements: list[_Element]) -> dict:
    offset = start
    found: dict[str, dict[str, np.ndarray]] = {}
    for element in elements:
        if all(count is None for _, _, count in element.properties):
            dtype = np.dtype([(f"p{i}", "<" + kind) for i, (_, kind, _) in
                              enumerate(element.properties)])  # fmt: skip
            size = dtype.itemsize * element.count
            if size > len(data) - offset:
                raise FlameFileError(path, f"ends inside element '{element.name}' (truncated?)")
            table = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
            found[element.name] = {name: table[f"p{i}"].copy()
                                   for i, (name, _, _) in enumerate(element.properties)}  # fmt: skip
            offset += size
            continue
        if element.name != "face" or len(element.properties) != 1:
            raise FlameFileError(path, f"element '{element.name}' mixes lists and values; "
                                 "only a face element with one index list is read")  # fmt: skip
        name, kind, count_kind = element.properties[0]
        # FLAME meshes are triangles: every row is <count=3> then three indices.
        row = np.dtype([("n", "<" + count_kind), ("i", "<" + kind, (3,))])
        size = row.itemsize * element.count
        if size > len(data) - offset:
            raise FlameFileError(path, "ends inside the faces (truncated?), or not all are triangles")
        table = np.frombuffer(data, dtype=row, count=element.count, offset=offset)
        if element.count and not (table["n"] == 3).all():
            raise FlameFileError(path, "has faces that are not triangles; expected FLAME's")
        found["face"] = {name: table["i"].astype(np.int64)}
        offset += size
    if offset != len(data):
        raise FlameFileError(path, f"has {len(data) - offset} bytes after its last element")
    return found


def _read_ascii(path: Path, data: bytes, start: int, elements: list[_Element]) -> dict:
    lines = data[start:].decode("ascii", errors="replace").splitlines()
    position = 0
    found: dict[str, dict[str, np.ndarray]] = {}
    for element in elements:
        chunk = lines[position : position + element.count]
        if len(chunk) != element.count:
            raise FlameFileError(path, f"ends inside element '{element.name}' (truncated?)")
        position += element.count
        lists = [count for _, _, count in element.properties if count is not None]
        try:
            if not lists:
                width = len(element.properties)
                table = np.array([line.split() for line in chunk], dtype=np.float64)
                if table.shape != (element.count, width) and element.count:
                    raise ValueError(f"rows of '{element.name}' do not have {width} values")
                table = table.reshape(element.count, width)
                found[element.name] = {name: table[:, i]
                                       for i, (name, _, _) in enumerate(element.properties)}  # fmt: skip
            elif element.name == "face" and len(element.properties) == 1:
                table = np.array([line.split() for line in chunk], dtype=np.int64)
                if element.count and (table.ndim != 2 or table.shape[1] != 4
                                      or not (table[:, 0] == 3).all()):  # fmt: skip
                    raise ValueError("faces are not all triangles")
                found["face"] = {element.properties[0][0]: table.reshape(-1, 4)[:, 1:]}
            else:
                raise ValueError(f"element '{element.name}' mixes lists and values")
        except ValueError as error:
            raise FlameFileError(path, f"element '{element.name}': {error}") from None
    if any(line.strip() for line in lines[position:]):
        raise FlameFileError(path, "has lines after its last element")
    return found


@file_reader
def load_ply_mesh(path: str | Path) -> TemplateMesh:
    """Read a triangle mesh from a PLY file as a :class:`TemplateMesh` with no UVs
    (``uvs`` (0, 2), ``uv_faces`` (0, 3)): vertices float64 (V, 3), faces int64 (F, 3), 0-based.

    Raises:
        FlameFileError: missing file, not a PLY, big-endian or unknown format, no x/y/z, faces
            that are not triangles, indices out of range, truncated data, NaN/inf.
    """
    path = Path(path).expanduser()
    data = read_file_bytes(path, "a .ply mesh")
    fmt, elements, start = _parse_header(path, data)
    names = [element.name for element in elements]
    if "vertex" not in names or "face" not in names or len(set(names)) != len(names):
        raise FlameFileError(path, f"has elements {names}; expected one 'vertex' and one 'face'")
    reader = _read_binary if fmt == "binary_little_endian" else _read_ascii
    found = reader(path, data, start, elements)
    vertex_element = elements[names.index("vertex")]
    vertices = _vertices(path, vertex_element, found["vertex"])
    face_rows = found["face"]
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face_rows), None)
    if key is None:
        raise FlameFileError(path, "face element has no 'vertex_indices' list")
    faces = np.asarray(face_rows[key], dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise FlameFileError(
            path, f"face indices {int(faces.min())}..{int(faces.max())} out of range; expected "
            f"0..{len(vertices) - 1}",
        )
    if not len(vertices) or not len(faces):
        raise FlameFileError(path, "has no vertices or faces; expected a mesh")
    return TemplateMesh(
        vertices=vertices,
        faces=faces,
        uvs=np.zeros((0, 2), dtype=np.float64),
        uv_faces=np.zeros((0, 3), dtype=np.int64),
        source=path,
    )
