"""The torch speed path of :class:`~.flame_torch.FLAME`: blend shapes and skinning laid out for speed.

Vertices stay coordinate-planar ``(B, 3V)`` (all x, all y, all z: long contiguous rows); the
skinning itself is :func:`.lbs.skinning_displacement`. Batches are skinned in chunks of
:data:`CHUNK_SIZE` heads; on the CPU without autograd, batches of up to :data:`SMALL_BATCH` heads
run the memory-bound product and the skinning in numpy (see the comments for why).
"""

from __future__ import annotations

import numpy as np
import torch

from .lbs import skinning_displacement

#: Heads per skinning chunk: four keep the per-vertex temporaries (about 250 kB a head in
#: float32) in the L2 cache; measured fastest on the benchmark machine.
CHUNK_SIZE = 4
#: Up to this many heads, inference on the CPU does the blend-shape product with numpy's BLAS.
SMALL_BATCH = 4


def blend(base: torch.Tensor, pieces: list[tuple[torch.Tensor, slice]], directions: torch.Tensor) -> torch.Tensor:
    """``base (B, 3V) + sum of coefficients (B, k) @ directions[rows] (k, 3V)``."""
    if (
        base.shape[0] <= SMALL_BATCH
        and directions.device.type == "cpu"
        and not (torch.is_grad_enabled() and (base.requires_grad or any(c.requires_grad for c, _ in pieces)))
    ):
        # A few heads without autograd: a memory-bound matrix-vector product of up to 24 MB.
        # numpy's BLAS (OpenBLAS) streams it up to 2.7x faster than torch's MKL does on AMD
        # CPUs (MKL neither vectorises this shape fully there nor splits it across threads).
        array = directions.numpy()
        out = None
        for coefficients, rows in pieces:
            product = coefficients.detach().numpy() @ array[rows]
            out = product if out is None else np.add(out, product, out=out)
        base_array = base.detach().numpy()
        return torch.from_numpy(base_array.copy() if out is None else np.add(out, base_array, out=out))
    for coefficients, rows in pieces:
        base = torch.addmm(base, coefficients, directions[rows])
    return base


def merge_adjacent(pieces: list[tuple[torch.Tensor, slice]]) -> list[tuple[torch.Tensor, slice]]:
    """Join pieces whose rows follow each other, so they become one matrix product."""
    merged: list[tuple[torch.Tensor, slice]] = []
    for coefficients, rows in pieces:
        if merged and merged[-1][1].stop == rows.start:
            previous, previous_rows = merged[-1]
            merged[-1] = (torch.cat([previous, coefficients], dim=1), slice(previous_rows.start, rows.stop))
        else:
            merged.append((coefficients, rows))
    return merged


def finish(
    planar: torch.Tensor,
    per_joint: torch.Tensor | None,
    joints: torch.Tensor,
    transl: torch.Tensor | None,
    weights_transposed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Skin (unless ``per_joint`` is None), translate and lay out ``(B, V, 3)``, in chunks.

    ``planar (B, 3V)`` posed vertices, ``per_joint (B, 12, J)`` (see
    :func:`.lbs.skinning_displacement`), posed ``joints (B, J, 3)``, ``transl (B, 3)`` or None,
    ``weights_transposed (J, V)``. Returns vertices ``(B, V, 3)`` and translated joints.
    """
    batch, n_vertices = planar.shape[0], weights_transposed.shape[1]
    tracked = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (planar, per_joint, transl)
    )
    if not tracked and batch <= SMALL_BATCH and planar.device.type == "cpu":
        return finish_numpy(planar, per_joint, joints, transl, weights_transposed)
    # without autograd, each chunk's last addition writes straight into the (B, V, 3) result
    out = None if tracked else torch.empty(batch, n_vertices, 3, dtype=planar.dtype, device=planar.device)
    parts = []
    for start in range(0, batch, CHUNK_SIZE):
        stop = min(start + CHUNK_SIZE, batch)
        count = stop - start
        v = planar[start:stop].reshape(count, 3, n_vertices)
        change = None
        if per_joint is not None:
            change = skinning_displacement(v, per_joint[start:stop], weights_transposed)
        if transl is not None:
            shift = transl[start:stop].unsqueeze(-1)
            change = shift if change is None else change + shift
        if out is not None:
            target = out[start:stop].transpose(1, 2)
            if change is None:
                target.copy_(v)
            else:
                torch.add(v, change, out=target)
            continue
        parts.append((v if change is None else v + change).transpose(1, 2))
    if out is not None:
        vertices = out
    else:
        # a transposed view is never contiguous, so this always copies (never aliases a buffer)
        vertices = parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)
    if transl is not None:
        joints = joints + transl.unsqueeze(1)
    elif per_joint is None:
        joints = joints.clone()
    return vertices, joints

def finish_numpy(
    planar: torch.Tensor,
    per_joint: torch.Tensor | None,
    joints: torch.Tensor,
    transl: torch.Tensor | None,
    weights_transposed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`finish` for a few heads without autograd, in numpy.

    The per-vertex steps are a handful of 15k-60k element operations: torch would spread
    each over its thread pool (and spin there), numpy does them in one thread with less
    overhead per call. Same arithmetic, same order.
    """
    batch, n_vertices = planar.shape[0], weights_transposed.shape[1]
    v = planar.numpy().reshape(batch, 3, n_vertices)
    out = np.empty((batch, n_vertices, 3), dtype=v.dtype)
    target = out.transpose(0, 2, 1)  # planar view of the interleaved result
    if per_joint is None:
        change = None
    else:
        change = skinning_displacement(v, per_joint.numpy(), weights_transposed.numpy())
    if transl is not None:
        shift = transl.numpy()[:, :, None]
        change = shift if change is None else change + shift
    if change is None:
        target[...] = v
    else:
        np.add(v, change, out=target)
    if transl is not None:
        joints = joints + transl.unsqueeze(1)
    elif per_joint is None:
        joints = joints.clone()
    return torch.from_numpy(out), joints
