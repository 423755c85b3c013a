"""The head's material: albedo from a texture model on the UV map, or a plain skin colour.

The texture model's image (``TextureModel.image``: row 0 = top of the UV square) goes into a
Blender image with ``pixels.foreach_set``, rows flipped because Blender's row 0 is the bottom.
The image keeps the model's colour space (sRGB for the FLAME texture space, linear for AlbedoMM
and the BFM albedo). The material also writes each triangle's segmentation label (the face
attribute ``flame_label``) to the ``flame_label`` AOV, which Cycles' ground-truth passes read
(the tests' reference; the batch renderer takes each triangle's label from
:func:`assign_labels`).
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ... import core
from ...core.render.segmentation import LABELS, face_labels, vertex_labels

LABEL_ATTRIBUTE = "flame_label"
LABEL_AOV = "flame_label"
SKIN_COLOUR = (0.80, 0.57, 0.47, 1.0)  # linear RGB of a light skin tone
#: Texture model files, in the order they are preferred: albedos first, since the studio lights
#: the head (the FLAME texture space has lighting baked in).
TEXTURE_FILES = (
    "albedoModel2020_FLAME_albedoPart.npz",
    "FLAME_albedo_from_BFM.npz",
    "FLAME_texture.npz",
)


def find_texture_model_file(flame_dir: str | Path) -> Path | None:
    """The preferred texture model file in a FLAME folder, or None."""
    folder = Path(flame_dir)
    if folder.is_file():
        folder = folder.parent
    for name in TEXTURE_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def head_corner_uvs(head: bpy.types.Object) -> np.ndarray | None:
    """The head mesh's active UV map per triangle corner ``(3F, 2)`` float32, or None."""
    layer = head.data.uv_layers.active
    if layer is None:
        return None
    uvs = np.empty(2 * len(layer.data), np.float32)
    layer.data.foreach_get("uv", uvs)
    return uvs.reshape(-1, 2)


def albedo_problem(head: bpy.types.Object, texture_model) -> str | None:
    """Why ``texture_model`` cannot be shown on ``head`` (no UVs, another UV layout), or None."""
    return core.albedo_problem(texture_model, head_corner_uvs(head), len(head.data.polygons))


def material_name(head: bpy.types.Object) -> str:
    return f"FLAME Skin {head.name}"


def image_name(head: bpy.types.Object) -> str:
    return f"FLAME Albedo {head.name}"


def ensure_head_material(
    head: bpy.types.Object,
    texture_model=None,
    coefficients: np.ndarray | None = None,
    pack: bool = False,
) -> bpy.types.Material:
    """Give ``head`` its skin material (created once, then updated) and return it.

    With a ``core.TextureModel`` the base colour is its image for ``coefficients`` (None: the
    mean); without one, a plain skin colour. ``pack`` stores the image in the .blend (a
    generated image is saved empty otherwise); batch renders, which never save, skip it.
    """
    material = bpy.data.materials.get(material_name(head))
    if material is None:
        material = bpy.data.materials.new(material_name(head))
    if bpy.app.version < (5, 0, 0) and not material.use_nodes:
        material.use_nodes = True  # Blender < 5.0; 5.0 materials always use nodes
    tree = material.node_tree
    nodes = {node.name: node for node in tree.nodes}
    bsdf = nodes.get("Principled BSDF") or tree.nodes.new("ShaderNodeBsdfPrincipled")
    output = nodes.get("Material Output") or tree.nodes.new("ShaderNodeOutputMaterial")
    if not bsdf.outputs["BSDF"].links:
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = 0.5
    _set_input(bsdf, "Subsurface Weight", 0.1)
    _set_input(bsdf, "Subsurface Scale", 0.004)  # metres: skin scatters over a few mm
    _set_input(bsdf, "Subsurface Radius", (1.0, 0.35, 0.2))

    texture = nodes.get("FLAME Albedo")
    if texture_model is not None:
        if texture is None:
            texture = tree.nodes.new("ShaderNodeTexImage")
            texture.name = "FLAME Albedo"
            texture.location = (-400, 200)
        texture.image = update_albedo_image(head, texture_model, coefficients)
        if pack:
            texture.image.pack()
        tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        if texture is not None:
            tree.nodes.remove(texture)
        bsdf.inputs["Base Color"].default_value = SKIN_COLOUR

    if nodes.get("FLAME Label") is None:
        attribute = tree.nodes.new("ShaderNodeAttribute")
        attribute.name = "FLAME Label"
        attribute.attribute_type = "GEOMETRY"
        attribute.attribute_name = LABEL_ATTRIBUTE
        attribute.location = (-400, -300)
        aov = tree.nodes.new("ShaderNodeOutputAOV")
        aov.name = "FLAME Label AOV"
        aov.aov_name = LABEL_AOV
        aov.location = (300, -300)
        tree.links.new(attribute.outputs["Fac"], aov.inputs["Value"])

    mesh = head.data
    if material.name not in mesh.materials:
        mesh.materials.clear()
        mesh.materials.append(material)
    return material


def update_albedo_image(
    head: bpy.types.Object, texture_model, coefficients: np.ndarray | None = None
) -> bpy.types.Image:
    """Write the texture model's image for ``coefficients`` into the head's albedo image."""
    return write_albedo_image(head, albedo_pixels(texture_model, coefficients), texture_model.colorspace != "sRGB")


def albedo_pixels(texture_model, coefficients: np.ndarray | None = None) -> np.ndarray:
    """The texture model's image for ``coefficients`` as Blender image pixels: ``(H, W, 4)``
    float32 RGBA, row 0 = the bottom (Blender's order). Needs no Blender (any thread)."""
    pixels = np.asarray(texture_model.image(coefficients), np.float32)  # (H, W, 3), row 0 = top
    height, width = pixels.shape[:2]
    rgba = np.ones((height, width, 4), np.float32)
    rgba[:, :, :3] = np.clip(pixels, 0.0, 1.0)
    return np.ascontiguousarray(rgba[::-1])


def write_albedo_image(head: bpy.types.Object, rgba: np.ndarray, linear: bool) -> bpy.types.Image:
    """Put :func:`albedo_pixels` into the head's albedo image (created or resized as needed)."""
    height, width = rgba.shape[:2]
    image = bpy.data.images.get(image_name(head))
    if image is not None and (tuple(image.size) != (width, height) or image.is_float != linear):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(
            image_name(head), width, height, alpha=False, float_buffer=linear
        )
    _set_colourspace(image, linear)
    image.pixels.foreach_set(rgba.reshape(-1))
    image.update()
    return image


def assign_labels(head: bpy.types.Object, flame_dir: str | Path | None) -> np.ndarray:
    """Store each triangle's label in the face attribute ``flame_label``; returns ``(F,)`` uint8.

    Labels come from ``FLAME_masks.pkl`` beside the model (:mod:`core.segmentation`); without
    that file every triangle is "face".
    """
    mesh = head.data
    faces = np.empty(len(mesh.polygons) * 3, np.int32)
    mesh.polygons.foreach_get("vertices", faces)
    faces = faces.reshape(-1, 3)
    masks = {}
    folder = Path(flame_dir) if flame_dir else None
    if folder is not None and folder.is_file():
        folder = folder.parent
    if folder is not None and (folder / "FLAME_masks.pkl").is_file():
        masks = core.load_flame_masks(folder / "FLAME_masks.pkl")
    if masks:
        labels = face_labels(vertex_labels(masks, len(mesh.vertices), faces), faces)
    else:
        labels = np.full(len(faces), LABELS["face"], np.uint8)
    attribute = mesh.attributes.get(LABEL_ATTRIBUTE)
    if attribute is not None and (attribute.domain != "FACE" or attribute.data_type != "FLOAT"):
        mesh.attributes.remove(attribute)
        attribute = None
    if attribute is None:
        attribute = mesh.attributes.new(LABEL_ATTRIBUTE, "FLOAT", "FACE")
    attribute.data.foreach_set("value", labels.astype(np.float32))
    return labels


def _set_input(node: bpy.types.Node, name: str, value) -> None:
    socket = node.inputs.get(name)
    if socket is not None:
        socket.default_value = value


def _set_colourspace(image: bpy.types.Image, linear: bool) -> None:
    # Colour-space names differ between OpenColorIO configurations (4.x "Linear Rec.709").
    for name in ("Linear Rec.709", "Linear", "Non-Color") if linear else ("sRGB",):
        try:
            image.colorspace_settings.name = name
            return
        except TypeError:
            continue
