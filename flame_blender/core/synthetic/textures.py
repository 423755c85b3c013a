"""Synthetic albedo models painted in the template's UV space.

Each texel is mapped back to the head surface through the UV layout of geometry.py (the head's
UVs are an analytic cylinder unwrap), so the mean albedo can be coloured by face region: skin,
redder lips and cheeks, darker brows, white eyeballs with an iris. Components are smooth colour
fields (tone, redness, and low-frequency patterns), decaying in strength.
"""

from __future__ import annotations

import numpy as np

from .geometry import (
    BROW_Y,
    EYE_X,
    EYE_Y,
    HEAD_UV_BOX,
    LEFT_EYE_UV_BOX,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    PHI_MAX,
    RIGHT_EYE_UV_BOX,
    _gauss,
    _smoothstep,
    eyeball_polar,
    head_surface,
    head_uv_inverse,
)

SKIN_SRGB = np.array([0.80, 0.60, 0.50])
LIPS_SRGB = np.array([0.70, 0.36, 0.36])
BROW_SRGB = np.array([0.30, 0.22, 0.17])
SCLERA_SRGB = np.array([0.92, 0.90, 0.88])
IRIS_SRGB = np.array([0.28, 0.42, 0.55])
PUPIL_SRGB = np.array([0.03, 0.03, 0.03])


def _texel_uv(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """u, v of texel centres; row 0 is the top of the UV square (v = 1)."""
    centres = (np.arange(resolution) + 0.5) / resolution
    u, v = np.meshgrid(centres, 1.0 - centres)
    return u, v


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def mean_albedo_srgb(resolution: int) -> np.ndarray:
    """(R, R, 3) RGB in 0..1 (sRGB), row 0 = top of the UV square."""
    u, v = _texel_uv(resolution)
    image = np.empty((resolution, resolution, 3))
    image[:] = SKIN_SRGB
    # head: map texels back to surface points
    u0, v0, u1, v1 = HEAD_UV_BOX
    phi, theta = head_uv_inverse(u, v)
    inside = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
    phi, theta = np.clip(phi[inside], 1e-3, PHI_MAX), theta[inside]
    # in chunks: ray casting many texels at once would need a lot of memory at 512 x 512
    p = np.concatenate([head_surface(phi[i:i + 16384], theta[i:i + 16384])
                        for i in range(0, len(phi), 16384)])
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    front = _smoothstep(0.03, 0.07, z)
    ax = np.abs(x)
    color = np.tile(SKIN_SRGB, (len(p), 1))
    lip_width = _smoothstep(MOUTH_HALF_WIDTH + 0.003, MOUTH_HALF_WIDTH - 0.006, ax)
    lips = front * lip_width * _smoothstep(0.0135, 0.0095, np.abs(y - MOUTH_Y + 0.0015))
    cheeks = front * _gauss(ax, 0.045, 0.014) * _gauss(y, EYE_Y - 0.035, 0.014)
    brows = front * _gauss(ax, EYE_X - 0.002, 0.013) * _gauss(y, BROW_Y, 0.0032)
    brows = np.clip(brows * 1.4, 0, 1)
    color = color * (1 - 0.15 * cheeks[:, None]) + 0.15 * cheeks[:, None] * LIPS_SRGB
    color = color * (1 - lips[:, None]) + lips[:, None] * LIPS_SRGB
    color = color * (1 - brows[:, None]) + brows[:, None] * BROW_SRGB
    # a little darker under the jaw and down the neck, as skin tends to be
    color *= (1 - 0.08 * _smoothstep(-0.1, -0.18, y))[:, None]
    image[inside] = color
    # eyeballs: polar angle from the front pole gives pupil, iris, sclera
    for box in (LEFT_EYE_UV_BOX, RIGHT_EYE_UV_BOX):
        bu0, bv0, bu1, bv1 = box
        inside = (u >= bu0) & (u <= bu1) & (v >= bv0) & (v <= bv1)
        polar = eyeball_polar((v[inside] - bv0) / (bv1 - bv0))
        iris = _smoothstep(0.62, 0.55, polar)[:, None]
        pupil = _smoothstep(0.3, 0.24, polar)[:, None]
        eye = SCLERA_SRGB * (1 - iris) + IRIS_SRGB * iris
        image[inside] = eye * (1 - pupil) + PUPIL_SRGB * pupil
    return image


def components(resolution: int, count: int, rng: np.random.Generator,
               strength: float) -> np.ndarray:
    """(R, R, 3, count) float32 smooth colour fields (RGB), decaying in strength."""
    u, v = _texel_uv(resolution)
    out = np.empty((resolution, resolution, 3, count), dtype=np.float32)
    tones = [np.array([1.0, 1.0, 1.0]), np.array([1.0, -0.2, -0.4]),
             np.array([0.6, 0.5, -0.8])]
    for k in range(count):
        if k < len(tones):
            field = np.ones_like(u)[..., None] * tones[k]
        else:
            freq = 1 + k // 20
            field = np.zeros((resolution, resolution, 3))
            for _ in range(2):
                wave = rng.normal(size=2) * np.pi * freq
                field += (np.sin(u * wave[0] + v * wave[1] + rng.uniform(0, 2 * np.pi))[..., None]
                          * rng.normal(size=3))
        field = field / (np.sqrt(np.mean(field**2)) + 1e-12)
        out[..., k] = (strength * (1 + k) ** -0.6 * field).astype(np.float32)
    return out


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, :, ::-1, ...])


def flame_texture(resolution: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """FLAME_texture.npz arrays (BGR, 0..255): mean float64, tex_dir float32 (R,R,3,200)."""
    mean = mean_albedo_srgb(resolution) * 255.0
    tex_dir = components(resolution, 200, rng, strength=12.0)
    return {"mean": _bgr(mean), "tex_dir": _bgr(tex_dir)}


def albedo_mm(resolution: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """AlbedoMM arrays (BGR, linear 0..1): MU, specMU float64, PC, specPC float32 (R,R,3,145)."""
    mu = srgb_to_linear(mean_albedo_srgb(resolution))
    spec_mu = np.full_like(mu, 0.05)
    pc = components(resolution, 145, rng, strength=0.04)
    spec_pc = components(resolution, 145, rng, strength=0.01)
    return {"MU": _bgr(mu), "PC": _bgr(pc), "specMU": _bgr(spec_mu), "specPC": _bgr(spec_pc)}


def bfm_albedo(resolution: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """FLAME_albedo_from_BFM.npz arrays: MU (R*R*3,) float64, PC (R*R*3, 199) float32, BGR."""
    mu = srgb_to_linear(mean_albedo_srgb(resolution))
    pc = components(resolution, 199, rng, strength=0.04)
    return {"MU": _bgr(mu).reshape(-1), "PC": _bgr(pc).reshape(-1, 199)}

