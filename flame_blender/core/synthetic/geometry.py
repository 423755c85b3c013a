"""The synthetic head mesh: FLAME's vertex and triangle counts, eyeballs at FLAME's indices.

The head (vertices 0..3930) is a star-shaped surface around a centre point, sampled on 61
horizontal rings below a crown vertex, open at the neck (42 boundary vertices) and with a
mouth slit (20 boundary vertices: the lower lip has its own copies of the slit's 9 inner
vertices, so the lips part when the jaw opens). A genus-0 surface with two boundary loops,
V vertices and B boundary vertices has 2V - B triangles: FLAME's 7800 head triangles for
V = 3931, B = 62. Each eyeball is a UV sphere of 17 rings by 32 segments plus two poles:
546 vertices and 1088 triangles, like FLAME's.

UVs: the head is unwrapped cylindrically (u from the azimuth, face at u = 0.5, seam at the
back of the head; both directions stretched so the face gets most texels), the eyeballs get
boxes above it. Every ring repeats its seam vertex in UV
space, which gives 61 + 2 * 17 = 95 seam duplicates: 5118 UVs, the real template's count.

Coordinates: metres, y up, the face looks toward +z, the left eye is at +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_VERTICES = 5023
N_FACES = 9976
N_UVS = 5118
HEAD_VERTICES = 3931
LEFT_EYEBALL = range(3931, 4477)
RIGHT_EYEBALL = range(4477, 5023)

N_RINGS = 61
# The mouth is a slit of this many edges along the mouth line (its lips part when the jaw
# opens); with it the head has two boundary loops and 2V - B triangles (B = 42 + 20 = 62).
MOUTH_SLIT_EDGES = 10
NECK_BOUNDARY = 62 - 2 * MOUTH_SLIT_EDGES
EYE_RINGS = 17
EYE_SEGMENTS = 32
EYEBALL_RADIUS = 0.0122

# The star centre of the head surface: every ray from it leaves the surface once.
CENTRE = np.array([0.0, -0.02, -0.024])
# Polar angle (from +y) of the neck's open end.
PHI_MAX = np.radians(163.0)

# Where the face's parts are (metres; +x is the subject's left, y up, the face toward +z).
EYE_X, EYE_Y = 0.032, 0.006
BROW_Y = 0.028
NOSE_TIP_Y = -0.026
NOSTRIL_Y = -0.036
MOUTH_Y = -0.063           # the line between the lips
MOUTH_HALF_WIDTH = 0.024
CHIN_Y = -0.097
EAR_Y, EAR_Z = -0.004, -0.016
FOREHEAD_Y = 0.06


@dataclass(frozen=True)
class HeadMesh:
    vertices: np.ndarray        # (5023, 3) float64
    faces: np.ndarray           # (9976, 3) int64, outward winding
    uvs: np.ndarray             # (5118, 2) float64
    uv_faces: np.ndarray        # (9976, 3) int64
    ring_of_vertex: np.ndarray  # (5023,) int64: head ring (0 = crown), -1 for eyeballs
    upper_lip: np.ndarray       # (9,) the slit's inner vertices on the upper lip
    lower_lip: np.ndarray       # (9,) their copies on the lower lip (same places at rest)
    head_rings: tuple           # per ring: vertex index array (ring 0 = the crown vertex)
    eye_centres: np.ndarray     # (2, 3) left (+x), right
    phi: np.ndarray             # (3931,) polar angle of each head vertex
    theta: np.ndarray           # (3931,) azimuth of each head vertex (0 = front, +pi/2 = +x)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def directions(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Unit vectors for polar angle ``phi`` (from +y) and azimuth ``theta`` (0 = +z, pi/2 = +x)."""
    s = np.sin(phi)
    return np.stack([s * np.sin(theta), np.cos(phi), s * np.cos(theta)], axis=-1)


def _ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (negative inside)."""
    q = (p - np.asarray(centre)) / np.asarray(radii)
    k0 = np.sqrt(np.einsum("...i,...i->...", q, q))
    q = q / np.asarray(radii)
    k1 = np.sqrt(np.einsum("...i,...i->...", q, q))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _superellipsoid(p: np.ndarray, centre, radii, exponent: float) -> np.ndarray:
    """Approximate signed distance to a rounded box-like ellipsoid (exponent > 2 is boxier)."""
    q = np.abs((p - np.asarray(centre)) / np.asarray(radii))
    k = (q**exponent).sum(axis=-1) ** (1.0 / exponent)
    return (k - 1.0) * min(radii)


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k / 4.0


def head_distance(p: np.ndarray) -> np.ndarray:
    """Signed distance (approximate, metres) to the feature-less head and neck: (...,)."""
    cranium = _superellipsoid(p, (0.0, 0.012, -0.012), (0.075, 0.107, 0.1), 2.7)
    face = _ellipsoid(p, (0.0, -0.045, 0.022), (0.056, 0.07, 0.068))
    chin = _ellipsoid(p, (0.0, CHIN_Y + 0.002, 0.058), (0.023, 0.02, 0.028))
    mirrored = np.concatenate([np.abs(p[..., :1]), p[..., 1:]], axis=-1)
    cheeks = _ellipsoid(mirrored, (0.026, -0.028, 0.036), (0.034, 0.032, 0.046))
    side = (np.hypot(p[..., 0] / 0.047, (p[..., 2] + 0.024) / 0.051) - 1.0) * 0.047
    neck = np.maximum(side, p[..., 1] + 0.03)
    d = _smooth_union(cranium, face, 0.03)
    d = _smooth_union(d, cheeks, 0.02)
    d = _smooth_union(d, chin, 0.025)
    return _smooth_union(d, neck, 0.02)


def base_radius(d: np.ndarray) -> np.ndarray:
    """Distance from CENTRE to the feature-less surface along unit vectors ``d`` (N, 3)."""
    steps = np.linspace(0.0, 0.34, 35)[1:]
    points = CENTRE + steps[None, :, None] * d[:, None, :]
    outside = head_distance(points) > 0
    first = np.argmax(outside, axis=1)
    lo = np.where(first > 0, steps[np.maximum(first - 1, 0)], 0.0)
    hi = steps[first]
    for _ in range(22):
        mid = 0.5 * (lo + hi)
        out = head_distance(CENTRE + mid[:, None] * d) > 0
        hi = np.where(out, mid, hi)
        lo = np.where(out, lo, mid)
    return 0.5 * (lo + hi)


def _features(p: np.ndarray, eye_openings: bool = True) -> np.ndarray:
    """Outward displacement (metres) of face features at base-surface points ``p`` (N, 3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    front = _smoothstep(0.02, 0.065, z)
    out = np.zeros(len(p))
    # nose: a ridge growing from the brow to the tip, wings beside the nostrils
    width = 0.0045 + 0.0042 * _smoothstep(EYE_Y, NOSE_TIP_Y, y)
    ridge = _gauss(x, 0.0, width)
    profile = np.interp(y, [NOSTRIL_Y - 0.008, NOSTRIL_Y, NOSE_TIP_Y, EYE_Y, BROW_Y,
                            BROW_Y + 0.012], [0.0, 0.012, 0.026, 0.009, 0.002, 0.0])
    out += profile * ridge
    out += 0.006 * _gauss(ax, 0.0135, 0.005) * _gauss(y, NOSTRIL_Y + 0.005, 0.006)
    # eye sockets and brow ridge
    # the eyes: a shallow socket, lids standing a little forward, an almond-shaped opening
    # (tilted up at the outer corner) through which the eyeball shows
    socket = _gauss(ax, EYE_X, 0.016) * _gauss(y, EYE_Y, 0.013)
    almond = np.hypot((ax - EYE_X) / 0.0118,
                      (y - EYE_Y - 0.08 * (ax - EYE_X)) / (0.0054 - 0.12 * np.abs(ax - EYE_X)))
    out += -0.007 * socket + 0.0035 * _smoothstep(2.6, 1.0, almond)
    if eye_openings:
        out -= 0.012 * _smoothstep(1.1, 0.55, almond)
    out += 0.005 * _gauss(ax, EYE_X - 0.002, 0.02) * _gauss(y, BROW_Y, 0.0065)
    # cheekbones
    out += 0.005 * _gauss(ax, 0.045, 0.013) * _gauss(y, EYE_Y - 0.022, 0.012)
    # lips, the mouth line between them, the groove above the chin, the chin
    lip_width = _smoothstep(MOUTH_HALF_WIDTH + 0.004, MOUTH_HALF_WIDTH - 0.008, ax)
    out += 0.0065 * lip_width * _gauss(y, MOUTH_Y + 0.0065, 0.0045)
    out += 0.0075 * lip_width * _gauss(y, MOUTH_Y - 0.0075, 0.005)
    out -= 0.003 * _gauss(ax, 0.0, 0.022) * _gauss(y, MOUTH_Y, 0.002)
    out -= 0.003 * _gauss(x, 0.0, 0.003) * _gauss(y, (MOUTH_Y + NOSTRIL_Y) / 2, 0.006)
    out -= 0.003 * _gauss(x, 0.0, 0.02) * _gauss(y, MOUTH_Y - 0.02, 0.005)
    out *= front
    # ears: a disc standing off each side with a hollow in the middle
    side = _smoothstep(0.045, 0.068, ax)
    ellipse = np.hypot((y - EAR_Y) / 0.03, (z - EAR_Z) / 0.017)
    ear = 0.013 * _smoothstep(1.05, 0.5, ellipse) - 0.006 * _smoothstep(0.6, 0.1, ellipse)
    out += side * ear
    return out


def head_surface(phi: np.ndarray, theta: np.ndarray, eye_openings: bool = True) -> np.ndarray:
    """Points of the head surface at polar angles ``phi`` and azimuths ``theta``: (..., 3).

    Without ``eye_openings`` the lids are closed (used to seat the eyeballs)."""
    phi, theta = np.broadcast_arrays(np.asarray(phi, float), np.asarray(theta, float))
    shape = phi.shape
    d = directions(phi.ravel(), theta.ravel())
    p = CENTRE + base_radius(d)[:, None] * d
    return (p + _features(p, eye_openings)[:, None] * d).reshape(*shape, 3)


def _ring_layout() -> tuple[np.ndarray, np.ndarray]:
    """Polar angles of the 61 rings and their vertex counts (summing to 3930, last = 60)."""
    # Denser rings through the face (eyes to chin) than at the crown.
    s = np.linspace(0.0, 1.0, 4001)
    density = 0.45 + 1.6 * np.exp(-0.5 * ((s - 0.6) / 0.17) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, N_RINGS + 1)[1:]
    phis = np.interp(targets, cdf, s) * PHI_MAX
    phis[0] = max(phis[0], np.radians(2.5))
    # Vertex counts follow the ring's circumference, the front denser than the back.
    samples = 96
    theta = np.concatenate([_azimuths(samples), [np.pi]])
    rings = head_surface(np.repeat(phis[:, None], samples + 1, axis=1),
                         np.broadcast_to(theta, (len(phis), samples + 1)))
    circumference = np.linalg.norm(np.diff(rings, axis=1), axis=2).sum(axis=1)
    # the lower lip's copies of the slit's inner vertices come out of the same budget
    budget = HEAD_VERTICES - 1 - NECK_BOUNDARY - (MOUTH_SLIT_EDGES - 1)
    lo, hi = 1e-3, 1e5
    for _ in range(100):
        scale = np.sqrt(lo * hi)
        counts = np.maximum(6, np.round(circumference[:-1] * scale)).astype(np.int64)
        if counts.sum() > budget:
            hi = scale
        else:
            lo = scale
    counts = np.maximum(6, np.round(circumference[:-1] * lo)).astype(np.int64)
    order = np.argsort(-circumference[:-1], kind="stable")
    i = 0
    while counts.sum() != budget:
        counts[order[i % len(order)]] += 1 if counts.sum() < budget else -1
        i += 1
    # The mouth ring's front lies exactly on the mouth line, and it has an even vertex count
    # so that a vertex sits at the front (theta = 0) and the slit is symmetric.
    mouth = mouth_ring_index(phis) - 1
    counts = np.concatenate([counts, [NECK_BOUNDARY]])
    if counts[mouth] % 2:
        counts[mouth] += 1
        others = [i for i in order if i != mouth]
        counts[others[0]] -= 1
    lo, hi = phis[mouth - 1], phis[mouth + 1]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if head_surface(np.array([mid]), np.array([0.0]))[0, 1] > MOUTH_Y:
            lo = mid
        else:
            hi = mid
    phis[mouth] = 0.5 * (lo + hi)
    return phis, counts


def mouth_ring_index(phis: np.ndarray) -> int:
    """The ring (1-based, 0 = crown) whose front is nearest the mouth line."""
    fronts = head_surface(phis, np.zeros_like(phis))
    return int(np.argmin(np.abs(fronts[:, 1] - MOUTH_Y))) + 1


def _azimuths(n: int) -> np.ndarray:
    """``n`` azimuths from -pi (the back, seam) upward, denser toward the face (theta = 0)."""
    t = np.linspace(-np.pi, np.pi, 2001)
    density = 1.0 + 3.0 * np.exp(-0.5 * (t / 0.65) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]
    return np.interp(np.arange(n) / n, cdf, t)


def _zip_rings(upper: np.ndarray, upper_theta: np.ndarray, lower: np.ndarray,
               lower_theta: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles between two closed rings, as indices into ring positions 0..n (n = seam copy).

    Returns corner triples of (ring, position) codes: ring 0 = upper, 1 = lower.
    """
    m, n = len(upper), len(lower)
    a = np.concatenate([upper_theta, [upper_theta[0] + 2 * np.pi]])
    b = np.concatenate([lower_theta, [lower_theta[0] + 2 * np.pi]])
    i = j = 0
    tris = []
    while i < m or j < n:
        advance_upper = j >= n or (i < m and a[i + 1] <= b[j + 1])
        if advance_upper:
            tris.append(((0, i), (1, j), (0, i + 1)))
            i += 1
        else:
            tris.append(((0, i), (1, j), (1, j + 1)))
            j += 1
    return tris


# Eyeball UVs give the front (iris and pupil) a larger share of the texture.
EYEBALL_UV_POWER = 0.6


def eyeball_uv_v(polar: np.ndarray) -> np.ndarray:
    """v (0..1 within the eyeball's box) of a point ``polar`` radians from the gaze."""
    return 1.0 - (np.asarray(polar) / np.pi) ** EYEBALL_UV_POWER


def eyeball_polar(v: np.ndarray) -> np.ndarray:
    """The inverse of eyeball_uv_v."""
    return np.pi * np.clip(1.0 - np.asarray(v), 0.0, 1.0) ** (1.0 / EYEBALL_UV_POWER)


def _uv_sphere(centre: np.ndarray, radius: float, axis_front: np.ndarray):
    """Eyeball: poles along the gaze (front pole first), rings around it.

    Returns vertices (546, 3), triangles (1088, 3) local indices, uvs (563, 2) in the unit
    square, uv triangles (1088, 3), and the polar angle of each vertex from the front pole.
    """
    polar = np.linspace(0.0, np.pi, EYE_RINGS + 2)[1:-1]
    azimuth = np.arange(EYE_SEGMENTS) * 2 * np.pi / EYE_SEGMENTS
    front = axis_front / np.linalg.norm(axis_front)
    up = np.array([0.0, 1.0, 0.0])
    side = np.cross(up, front)
    side /= np.linalg.norm(side)
    up = np.cross(front, side)
    pa, az = np.meshgrid(polar, azimuth, indexing="ij")
    local = (np.cos(pa)[..., None] * front + np.sin(pa)[..., None]
             * (np.cos(az)[..., None] * up + np.sin(az)[..., None] * side))
    verts = np.concatenate([front[None], local.reshape(-1, 3), -front[None]]) * radius + centre
    vertex_polar = np.concatenate([[0.0], pa.ravel(), [np.pi]])

    def vid(r: int, s: int) -> int:
        return 1 + r * EYE_SEGMENTS + s % EYE_SEGMENTS

    def uid(r: int, s: int) -> int:
        return 1 + r * (EYE_SEGMENTS + 1) + s

    tris, uvtris = [], []
    last_v, last_uv = 1 + EYE_RINGS * EYE_SEGMENTS, 1 + EYE_RINGS * (EYE_SEGMENTS + 1)
    for s in range(EYE_SEGMENTS):
        tris.append((0, vid(0, s), vid(0, s + 1)))
        uvtris.append((0, uid(0, s), uid(0, s + 1)))
    for r in range(EYE_RINGS - 1):
        for s in range(EYE_SEGMENTS):
            tris.append((vid(r, s), vid(r + 1, s), vid(r + 1, s + 1)))
            uvtris.append((uid(r, s), uid(r + 1, s), uid(r + 1, s + 1)))
            tris.append((vid(r, s), vid(r + 1, s + 1), vid(r, s + 1)))
            uvtris.append((uid(r, s), uid(r + 1, s + 1), uid(r, s + 1)))
    r = EYE_RINGS - 1
    for s in range(EYE_SEGMENTS):
        tris.append((last_v, vid(r, s + 1), vid(r, s)))
        uvtris.append((last_uv, uid(r, s + 1), uid(r, s)))
    uv = [(0.5, 1.0)]
    for r in range(EYE_RINGS):
        for s in range(EYE_SEGMENTS + 1):
            uv.append((s / EYE_SEGMENTS, eyeball_uv_v((r + 1) / (EYE_RINGS + 1) * np.pi)))
    uv.append((0.5, 0.0))
    tris = np.array(tris, dtype=np.int64)
    # Orient outward: the normal of the first fan triangle must point along the gaze.
    v0, v1, v2 = verts[tris[0]]
    if np.dot(np.cross(v1 - v0, v2 - v0), front) < 0:
        tris = tris[:, ::-1].copy()
        uvtris = [t[::-1] for t in uvtris]
    uv, uvtris = np.array(uv), np.array(uvtris, dtype=np.int64)
    # Counter-clockwise in UV space like the head's, so the island is not mirrored.
    a, b, c = uv[uvtris[EYE_SEGMENTS]]
    if (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) < 0:
        uv[:, 0] = 1.0 - uv[:, 0]
    return verts, tris, uv, uvtris, vertex_polar


# UV layout: the head in the lower part of the square, the eyeballs side by side above it.
HEAD_UV_BOX = (0.01, 0.01, 0.99, 0.79)            # u0, v0, u1, v1
LEFT_EYE_UV_BOX = (0.52, 0.81, 0.98, 0.99)
RIGHT_EYE_UV_BOX = (0.02, 0.81, 0.48, 0.99)


def _cdf(grid: np.ndarray, density: np.ndarray) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return cdf / cdf[-1]


# The head's UVs give the face most of the texture: u and v grow fastest across the face.
_AZIMUTH_GRID = np.linspace(-np.pi, np.pi, 4001)
_AZIMUTH_CDF = _cdf(_AZIMUTH_GRID, 1.0 + 2.5 * np.exp(-0.5 * (_AZIMUTH_GRID / 0.7) ** 2))
_POLAR_GRID = np.linspace(0.0, PHI_MAX, 4001)
_POLAR_CDF = _cdf(_POLAR_GRID, 0.5 + np.exp(-0.5 * ((_POLAR_GRID - 1.75) / 0.42) ** 2))


def head_uv(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """UV of a head point: u from the azimuth (face at 0.5), v from the polar angle (crown up)."""
    u0, v0, u1, v1 = HEAD_UV_BOX
    u = u0 + np.interp(theta, _AZIMUTH_GRID, _AZIMUTH_CDF) * (u1 - u0)
    v = v1 - np.interp(phi, _POLAR_GRID, _POLAR_CDF) * (v1 - v0)
    return np.stack([u, v], axis=-1)


def head_uv_inverse(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi, theta) of head UVs ``u``, ``v`` (inside HEAD_UV_BOX): the inverse of head_uv."""
    u0, v0, u1, v1 = HEAD_UV_BOX
    theta = np.interp((u - u0) / (u1 - u0), _AZIMUTH_CDF, _AZIMUTH_GRID)
    phi = np.interp((v1 - v) / (v1 - v0), _POLAR_CDF, _POLAR_GRID)
    return phi, theta


def build_head_mesh() -> HeadMesh:
    phis, counts = _ring_layout()
    vertices = [CENTRE + base_radius(np.array([[0.0, 1.0, 0.0]]))[0] * np.array([0.0, 1, 0])]
    vertex_phi, vertex_theta = [0.0], [0.0]
    rings: list[np.ndarray] = [np.array([0])]
    ring_thetas: list[np.ndarray] = [np.array([0.0])]
    uvs = [head_uv(np.array(0.0), np.array(0.0))]
    ring_uv_start = [0]
    start = 1
    uv_start = 1
    for phi, n in zip(phis, counts, strict=True):
        theta = _azimuths(int(n))
        vertices.extend(head_surface(np.full(n, phi), theta))
        vertex_phi.extend([phi] * n)
        vertex_theta.extend(theta)
        rings.append(np.arange(start, start + n))
        ring_thetas.append(theta)
        uvs.extend(head_uv(np.full(n + 1, phi), np.concatenate([theta, [np.pi]])))
        ring_uv_start.append(uv_start)
        start += n
        uv_start += n + 1
    # The mouth slit: the lower lip gets its own copies of the slit's inner vertices.
    mouth_ring = mouth_ring_index(phis)
    n_mouth = len(rings[mouth_ring])
    slit = np.arange(n_mouth // 2 - MOUTH_SLIT_EDGES // 2 + 1,
                     n_mouth // 2 + MOUTH_SLIT_EDGES // 2)
    upper_lip = rings[mouth_ring][slit]
    lower_lip = np.arange(start, start + len(slit))
    lower_uv = np.arange(uv_start, uv_start + len(slit))
    vertices.extend([vertices[i] for i in upper_lip])
    vertex_phi.extend([vertex_phi[i] for i in upper_lip])
    vertex_theta.extend([vertex_theta[i] for i in upper_lip])
    uvs.extend([uvs[ring_uv_start[mouth_ring] + position] for position in slit])
    start += len(slit)
    assert start == HEAD_VERTICES
    lower_copy = dict(zip(slit.tolist(), zip(lower_lip.tolist(), lower_uv.tolist(), strict=True),
                          strict=True))

    faces, uv_faces = [], []
    # crown fan
    ring1, n1 = rings[1], len(rings[1])
    for s in range(n1):
        faces.append((0, ring1[s], ring1[(s + 1) % n1]))
        uv_faces.append((0, ring_uv_start[1] + s, ring_uv_start[1] + s + 1))
    for k in range(1, N_RINGS):
        upper, lower = rings[k], rings[k + 1]
        for tri in _zip_rings(upper, ring_thetas[k], lower, ring_thetas[k + 1]):
            face, uv_face = [], []
            for which, pos in tri:
                ring_index = k + which
                ring = rings[ring_index]
                if ring_index == mouth_ring and which == 0 and pos in lower_copy:
                    # below the mouth line: the lower lip's copy
                    face.append(lower_copy[pos][0])
                    uv_face.append(lower_copy[pos][1])
                    continue
                face.append(ring[pos % len(ring)])
                uv_face.append(ring_uv_start[ring_index] + pos)
            faces.append(tuple(face))
            uv_faces.append(tuple(uv_face))
    head_vertices = np.array(vertices)
    faces = np.array(faces, dtype=np.int64)
    uv_faces = np.array(uv_faces, dtype=np.int64)
    # Outward winding: the crown fan's normal must point up.
    v0, v1, v2 = head_vertices[faces[0]]
    if np.cross(v1 - v0, v2 - v0)[1] < 0:
        faces = faces[:, ::-1].copy()
        uv_faces = uv_faces[:, ::-1].copy()
    head_uvs = np.array(uvs)

    # Eyeballs: the front of each pokes 1.5 mm past where the closed lids would be, so it
    # shows through the opening and the lids cover the rest.
    eye_centres = []
    for sign in (1.0, -1.0):
        ph = np.linspace(np.radians(50), np.radians(100), 51)
        th = np.linspace(0, sign * 0.7, 71)
        points = head_surface(*np.meshgrid(ph, th, indexing="ij"), eye_openings=False)
        points = points.reshape(-1, 3)
        lid = points[np.argmin(np.hypot(points[:, 0] - sign * EYE_X, points[:, 1] - EYE_Y))]
        eye_centres.append([sign * EYE_X, EYE_Y, lid[2] + 0.0015 - EYEBALL_RADIUS])
    eye_centres = np.array(eye_centres)

    all_vertices = [head_vertices]
    all_faces = [faces]
    all_uvs = [head_uvs]
    all_uv_faces = [uv_faces]
    v_offset, uv_offset = HEAD_VERTICES, len(head_uvs)
    for centre, box in zip(eye_centres, (LEFT_EYE_UV_BOX, RIGHT_EYE_UV_BOX), strict=True):
        gaze = np.array([0.0, 0.0, 1.0])
        v, f, uv, uvf, _ = _uv_sphere(centre, EYEBALL_RADIUS, gaze)
        u0, vv0, u1, vv1 = box
        uv = np.stack([u0 + uv[:, 0] * (u1 - u0), vv0 + uv[:, 1] * (vv1 - vv0)], axis=-1)
        all_vertices.append(v)
        all_faces.append(f + v_offset)
        all_uvs.append(uv)
        all_uv_faces.append(uvf + uv_offset)
        v_offset += len(v)
        uv_offset += len(uv)

    ring_of_vertex = np.full(N_VERTICES, -1, dtype=np.int64)
    for k, ring in enumerate(rings):
        ring_of_vertex[ring] = k
    ring_of_vertex[lower_lip] = mouth_ring
    mesh = HeadMesh(
        vertices=np.concatenate(all_vertices),
        faces=np.concatenate(all_faces),
        uvs=np.round(np.concatenate(all_uvs), 8),  # exactly what the OBJ's %.8f says
        uv_faces=np.concatenate(all_uv_faces),
        ring_of_vertex=ring_of_vertex,
        upper_lip=upper_lip,
        lower_lip=lower_lip,
        head_rings=tuple(rings),
        eye_centres=eye_centres,
        phi=np.array(vertex_phi),
        theta=np.array(vertex_theta),
    )
    assert mesh.vertices.shape == (N_VERTICES, 3), mesh.vertices.shape
    assert mesh.faces.shape == (N_FACES, 3), mesh.faces.shape
    assert mesh.uvs.shape == (N_UVS, 2), mesh.uvs.shape
    return mesh
