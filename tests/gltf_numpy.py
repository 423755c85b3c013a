"""A small glTF 2.0 evaluator in numpy, written from the glTF specification (not from Blender's
importer): skins, morph targets and sampled animation, for checking exported rigs.

Spec sections used: 5.1 accessors (component types, byte strides), 3.5.2 node TRS
(``T * R * S``, quaternions ``(x, y, z, w)``), 3.7.3 skins (vertex = sum of weight *
``global(joint) @ inverseBindMatrix``, the skinned mesh's own node transform ignored), 3.7.2.2
morph targets (``base + sum weight_i * target_i``), 3.11 animations (LINEAR, STEP samplers).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Gltf:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        data = path.read_bytes()
        if data[:4] == b"glTF":
            length = struct.unpack_from("<I", data, 12)[0]
            self.json = json.loads(data[20 : 20 + length])
            offset = 20 + length
            bin_length = struct.unpack_from("<I", data, offset)[0]
            self.buffers = [data[offset + 8 : offset + 8 + bin_length]]
        else:
            self.json = json.loads(data)
            self.buffers = [(path.parent / b["uri"]).read_bytes() for b in self.json["buffers"]]

    def accessor(self, index: int) -> np.ndarray:
        """``(count, width)`` values of an accessor, sparse substitution included (spec 5.1.7)."""
        accessor = self.json["accessors"][index]
        dtype = np.dtype(_COMPONENTS[accessor["componentType"]])
        width = _SIZES[accessor["type"]]
        count = accessor["count"]
        if "bufferView" in accessor:
            rows = self._view(accessor["bufferView"], accessor.get("byteOffset", 0), dtype, width, count)
        else:
            rows = np.zeros((count, width), dtype=dtype)
        sparse = accessor.get("sparse")
        if sparse:
            indices = sparse["indices"]
            where = self._view(
                indices["bufferView"], indices.get("byteOffset", 0),
                np.dtype(_COMPONENTS[indices["componentType"]]), 1, sparse["count"],
            ).reshape(-1)
            values = sparse["values"]
            rows = rows.copy()
            rows[where.astype(np.int64)] = self._view(values["bufferView"], values.get("byteOffset", 0), dtype, width, sparse["count"])
        if accessor.get("normalized"):
            rows = rows.astype(np.float64) / np.iinfo(dtype).max
        return rows

    def _view(self, view_index: int, offset: int, dtype: np.dtype, width: int, count: int) -> np.ndarray:
        view = self.json["bufferViews"][view_index]
        buffer = self.buffers[view.get("buffer", 0)]
        start = view.get("byteOffset", 0) + offset
        stride = view.get("byteStride", width * dtype.itemsize)
        if stride == width * dtype.itemsize:
            return np.frombuffer(buffer, dtype=dtype, count=width * count, offset=start).reshape(count, width)
        rows = np.empty((count, width), dtype=dtype)
        for i in range(count):
            rows[i] = np.frombuffer(buffer, dtype=dtype, count=width, offset=start + i * stride)
        return rows

    # -- scene graph -----------------------------------------------------------------------

    def parents(self) -> dict[int, int]:
        return {child: i for i, node in enumerate(self.json["nodes"]) for child in node.get("children", [])}

    def local_matrix(self, node: dict, overrides: dict[str, np.ndarray]) -> np.ndarray:
        if "matrix" in node and not overrides:
            return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
        t = overrides.get("translation", node.get("translation", [0, 0, 0]))
        x, y, z, w = overrides.get("rotation", node.get("rotation", [0, 0, 0, 1]))
        s = overrides.get("scale", node.get("scale", [1, 1, 1]))
        n = np.sqrt(x * x + y * y + z * z + w * w)
        x, y, z, w = x / n, y / n, z / n, w / n
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
        m = np.eye(4)
        m[:3, :3] = rotation * np.asarray(s, dtype=np.float64)[None, :]
        m[:3, 3] = t
        return m

    def sample(self, time: float, animation: int = 0) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, np.ndarray]]:
        """Animated node properties and morph weights at ``time`` (seconds)."""
        anim = self.json["animations"][animation]
        nodes: dict[int, dict[str, np.ndarray]] = {}
        weights: dict[int, np.ndarray] = {}
        for channel in anim["channels"]:
            sampler = anim["samplers"][channel["sampler"]]
            times = self.accessor(sampler["input"]).reshape(-1).astype(np.float64)
            values = self.accessor(sampler["output"]).astype(np.float64)
            path = channel["target"]["path"]
            if path == "weights":
                values = values.reshape(times.size, -1)
            value = _interpolate(times, values, time, sampler.get("interpolation", "LINEAR"), path)
            node = channel["target"]["node"]
            if path == "weights":
                weights[node] = value
            else:
                nodes.setdefault(node, {})[path] = value
        return nodes, weights

    def global_matrices(self, overrides: dict[int, dict[str, np.ndarray]]) -> list[np.ndarray]:
        parents = self.parents()
        nodes = self.json["nodes"]
        cache: dict[int, np.ndarray] = {}

        def world(i: int) -> np.ndarray:
            if i not in cache:
                local = self.local_matrix(nodes[i], overrides.get(i, {}))
                cache[i] = world(parents[i]) @ local if i in parents else local
            return cache[i]

        return [world(i) for i in range(len(nodes))]

    def skinned_mesh_node(self) -> int:
        return next(i for i, node in enumerate(self.json["nodes"]) if "mesh" in node and "skin" in node)

    def rest_positions(self) -> np.ndarray:
        """``(P, 3)`` POSITION of every primitive of the skinned mesh, concatenated."""
        mesh = self.json["meshes"][self.json["nodes"][self.skinned_mesh_node()]["mesh"]]
        return np.concatenate([self.accessor(p["attributes"]["POSITION"]) for p in mesh["primitives"]]).astype(np.float64)

    def evaluate(self, time: float, animation: int = 0) -> np.ndarray:
        """``(P, 3)`` world positions of the skinned mesh's vertices at ``time``."""
        node_index = self.skinned_mesh_node()
        node = self.json["nodes"][node_index]
        mesh = self.json["meshes"][node["mesh"]]
        skin = self.json["skins"][node["skin"]]
        overrides, morph = self.sample(time, animation)
        world = self.global_matrices(overrides)
        inverse_bind = self.accessor(skin["inverseBindMatrices"]).astype(np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)
        joint_matrices = np.stack([world[j] @ inverse_bind[k] for k, j in enumerate(skin["joints"])])
        weights = morph.get(node_index, np.asarray(mesh.get("weights", []), dtype=np.float64))
        out = []
        for primitive in mesh["primitives"]:
            attributes = primitive["attributes"]
            positions = self.accessor(attributes["POSITION"]).astype(np.float64)
            for k, target in enumerate(primitive.get("targets", [])):
                if k < len(weights) and weights[k] != 0.0:
                    positions = positions + weights[k] * self.accessor(target["POSITION"]).astype(np.float64)
            joints = self.accessor(attributes["JOINTS_0"]).astype(np.int64)
            vertex_weights = self.accessor(attributes["WEIGHTS_0"]).astype(np.float64)
            for extra in (1, 2, 3):
                if f"JOINTS_{extra}" in attributes:
                    joints = np.concatenate([joints, self.accessor(attributes[f"JOINTS_{extra}"]).astype(np.int64)], axis=1)
                    vertex_weights = np.concatenate([vertex_weights, self.accessor(attributes[f"WEIGHTS_{extra}"])], axis=1)
            skin_matrices = np.einsum("vk,vkab->vab", vertex_weights, joint_matrices[joints])
            out.append(np.einsum("vab,vb->va", skin_matrices[:, :3, :3], positions) + skin_matrices[:, :3, 3])
        return np.concatenate(out)

    def animation_times(self, animation: int = 0) -> np.ndarray:
        anim = self.json["animations"][animation]
        return self.accessor(anim["samplers"][0]["input"]).reshape(-1).astype(np.float64)


def _interpolate(times: np.ndarray, values: np.ndarray, time: float, mode: str, path: str) -> np.ndarray:
    if mode == "CUBICSPLINE":
        values = values.reshape(times.size, 3, -1)[:, 1]  # (in-tangent, value, out-tangent)
    if time <= times[0]:
        return values[0]
    if time >= times[-1]:
        return values[-1]
    i = int(np.searchsorted(times, time, side="right")) - 1
    if mode == "STEP" or times[i] == time:
        return values[i]
    u = (time - times[i]) / (times[i + 1] - times[i])
    a, b = values[i], values[i + 1]
    if path == "rotation":  # slerp
        dot = float(a @ b)
        if dot < 0:
            b, dot = -b, -dot
        if dot > 0.9995:
            q = a + u * (b - a)
            return q / np.linalg.norm(q)
        angle = np.arccos(dot)
        return (np.sin((1 - u) * angle) * a + np.sin(u * angle) * b) / np.sin(angle)
    return a + u * (b - a)
