"""flame-blender: the FLAME 3D head model in Blender.

The package has two halves:

- ``flame_blender.core``: pure Python (numpy, optional torch), never imports bpy. FLAME files,
  the forward pass, textures, landmarks, cameras, parameter sets. Import it from any script.
- ``flame_blender.blender``: the thin Blender layer (properties, operators, panels, handlers).

Blender calls :func:`register` and :func:`unregister`; importing the Blender layer only there
keeps ``import flame_blender.core`` working outside Blender.
"""


def register() -> None:
    from . import blender

    blender.register()


def unregister() -> None:
    from . import blender

    blender.unregister()
