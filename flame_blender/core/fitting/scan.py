"""Fit FLAME to a scan of any topology, with or without 3D landmarks.

Each outer iteration finds correspondences on the current head and takes a couple of solver
steps on two robust point-to-plane terms (planes of the model's vertex normals):

* ``scan_to_model``: scan points whose nearest model vertex lies in the fitted region (the
  face, by FLAME's masks) pull that vertex's tangent plane;
* ``model_to_scan``: every region vertex is pulled toward the nearest scan point, except where
  the scan has nothing near (holes, the missing back of the head).

A Geman-McClure kernel (its scale shrinking from 10 mm to 2 mm) turns noise, hair and
shoulders into small weights. The start is the landmarks' fit when there are landmarks, else the
principal-axes search of :mod:`.scan_start` followed by coarse fits from its best start turned
seven ways (the best of which, by a robust two-way point-to-plane score, is kept). Dense scans
are subsampled.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .. import FlameParameters
from ..errors import FlameParameterError
from .common import FitClock, finish, initial_theta, rest_root, run_stage
from .landmark_fit import LANDMARK_PRIORS, landmark_count, landmark_term, template_landmarks
from .model import FitModel, resolve_model
from .nearest import nearest, sample_surface, vertex_normals
from .problem import FIT_GROUPS, MILLIMETRE, Problem, Term, free_mask, term_weights
from .result import Callback, FitResult, check_points, detect_units, extent
from .rigid import rigid_parameters, similarity
from .scan_start import rigid_starts
from .solve_numpy import scaled_vertices

#: FLAME_masks regions fitted by default: what a face scan shows reliably.
SCAN_REGIONS = ("face", "forehead")
KERNEL_START, KERNEL_END = 10 * MILLIMETRE, 2 * MILLIMETRE
#: Without landmarks: model and scan points of the rigid search; the coarse fits from the rigid
#: start and its turns (outer iterations before the best is picked, then more for the best; the
#: identity components, the turn in radians, scan points, kernel from and to).
RIGID_POINTS = 1200
RIGID_STARTS = 3
#: A probe's two-way score (see _ScanFit.run) below which no further rigid start is tried: a
#: scan with 1 mm of noise that the head fits scores about 0.3 to 0.6, a wrong orientation 0.9 and up.
GOOD_PROBE = 0.75
PROBE_ITERATIONS = 4
PROBE_MORE = 2
PROBE_COMPONENTS = 10
PROBE_TURN = 0.45
PROBE_QUERIES = 1500
PROBE_KERNELS = (30 * MILLIMETRE, 6 * MILLIMETRE)
PROBE_KERNEL = 3 * MILLIMETRE
PROBE_GAP = 10 * MILLIMETRE


def _turns(angle: float = PROBE_TURN) -> list[np.ndarray]:
    """No turn, and ``angle`` either way about each axis: ``(3, 3)`` rotations."""
    from .rotation import axis_angle_to_matrix

    vectors = [np.zeros(3)] + [sign * angle * np.eye(3)[axis] for axis in range(3) for sign in (1, -1)]
    return [axis_angle_to_matrix(v) for v in vectors]


def fit_scan(
    model: FitModel | str | Path | None,
    points: object,
    faces: object = None,
    landmarks: object = None,
    embedding: str = "static_68",
    *,
    fit: Iterable[str] = FIT_GROUPS,
    fit_scale: bool = False,
    units: str | float = "auto",
    weights: dict[str, float] | None = None,
    iterations: int = 12,
    regions: Iterable[str] = SCAN_REGIONS,
    max_points: int = 20000,
    seed: int = 0,
    start: FlameParameters | None = None,
    callback: Callback | None = None,
    backend: str = "auto",
    device: str = "cpu",
) -> FitResult:
    """Shape, expression, pose and transl of a scan.

    Args:
        points: ``(N, 3)`` scan points (or vertices, with ``faces``), any frame, m, cm or mm.
        faces: ``(F, 3)`` triangles of a scan mesh: then points are spread over its surface.
        landmarks: optional ``(L, 3)`` 3D landmarks of ``embedding`` on the scan.
        iterations: correspondence updates (each followed by solver steps).
        regions: FLAME_masks regions fitted (all vertices when the model has no masks).
        max_points: scan points used (dense scans are subsampled, with ``seed``).
        weights: "scan_to_model", "model_to_scan", "landmarks" and the priors.

    Other arguments as :func:`~.registered.fit_registered`.
    """
    clock = FitClock(callback)
    model = resolve_model(model, backend, device)
    rng = np.random.default_rng(seed)
    scan = _scan_points(points, faces, max_points, rng)
    w = term_weights(weights)
    theta = initial_theta(model, start)
    region = _region(model, regions)
    k = model.n_coefficients

    marks = None
    if landmarks is not None:
        count = landmark_count(model, embedding)
        if count is None:
            raise FlameParameterError(
                f"embedding {embedding!r}: this model has the landmark embeddings {sorted(model.landmarks.static)}"
            )
        marks = check_points("landmarks", landmarks, count=count)
        rest_marks = template_landmarks(model, embedding, theta)
        unit_name, unit_scale = detect_units(extent(marks), extent(rest_marks), units)
    else:
        unit_name, unit_scale = detect_units(extent(scan), extent(model.v_template), units)
    scan_m = scan / unit_scale
    queries = scan_m[: max(max_points // 2, 1)]
    fitting = _ScanFit(model, clock, w, region, queries, scan_m, marks, embedding, unit_scale,
                       free_mask(model.n_shape, model.n_expression, fit, fit_scale))

    if marks is not None:
        marks_m = marks / unit_scale
        if start is None:
            s, rotation, translation = similarity(rest_marks, marks_m, with_scale=False)
            _place(theta, model, s, rotation, translation, fit_scale)
        stage = Problem(
            model.n_shape, model.n_expression, [landmark_term(model, embedding, marks_m, w["landmarks"])],
            free_mask(model.n_shape, model.n_expression, fit, fit_scale, eyes=False), **LANDMARK_PRIORS,
        )
        theta = run_stage(model, stage, theta, _steps(model, 10), clock, "landmarks", rounds=2)
    elif start is None:
        rest = theta.copy()
        rest[k:] = 0.0
        rest_vertices = scaled_vertices(model, rest)
        # the neck turns against the head: leave it out of the rigid search
        hidden = [_eyeballs(model)] + [model.masks[n] for n in ("neck", "boundary") if n in model.masks]
        picked = rng.permutation(np.setdiff1d(np.arange(model.n_vertices), np.concatenate(hidden)))[:RIGID_POINTS]
        face = rng.permutation(region)[: RIGID_POINTS // 2]
        starts = rigid_starts(rest_vertices[picked], rest_vertices[face], scan_m[:RIGID_POINTS], keep=RIGID_STARTS)
        clock.progress("rigid")(1, float("nan"))
        # a rigid start is within some 30 degrees at best (the neck bends the head, identity
        # changes it): a coarse fit (rigid, neck, jaw, 10 identity components, a wide kernel)
        # from it and from it turned by PROBE_TURN about each axis; the one that ends closest
        # wins. The next rigid start is tried only while none has come close to the scan.
        probe_free = free_mask(model.n_shape, model.n_expression, (), False)
        probe_free[: min(PROBE_COMPONENTS, model.n_shape)] = "shape" in set(fit)
        probe_free[k + 3 : k + 9] = "pose" in set(fit)  # neck and jaw
        probing = _ScanFit(model, clock, w, region, queries[:PROBE_QUERIES], scan_m[: 2 * PROBE_QUERIES], None,
                           embedding, 1.0, probe_free)
        probing.kernels = PROBE_KERNELS
        centre = rest_vertices[picked].mean(axis=0)
        tried = []
        for rotation, translation in starts:
            for turn in _turns():
                turned = rotation @ turn
                candidate = theta.copy()
                _place(candidate, model, 1.0, turned, translation + (rotation - turned) @ centre, fit_scale)
                tried.append(probing.run(candidate, 0, PROBE_ITERATIONS, total=PROBE_ITERATIONS + PROBE_MORE, probe=True))
            if min(score for _, score in tried) < GOOD_PROBE:
                break
        theta = min(tried, key=lambda found: found[1])[0]
        theta, _ = probing.run(theta, PROBE_ITERATIONS, PROBE_ITERATIONS + PROBE_MORE,
                               total=PROBE_ITERATIONS + PROBE_MORE)
    theta, _ = fitting.run(theta, 0, iterations, total=iterations)
    result = finish(model, fitting.problem, theta, unit_scale, unit_name, clock)
    # the aggregated term's residual is of per-vertex means: report the scan points' own
    result.residuals["scan_to_model"] = fitting.point_residual(theta) * unit_scale
    return result


class _ScanFit:
    """The outer loop: correspondences on the current head, then solver steps."""

    def __init__(self, model, clock, weights, region, queries, scan, marks, embedding, unit_scale, free) -> None:
        self.model, self.clock, self.w, self.region = model, clock, weights, region
        self.queries, self.scan, self.free = queries, scan, free
        self.marks = None if marks is None else marks / unit_scale
        self.embedding = embedding
        self.in_region = np.zeros(model.n_vertices, dtype=bool)
        self.in_region[region] = True
        self.outside_eyes = np.setdiff1d(np.arange(model.n_vertices), _eyeballs(model))
        self.problem = Problem(model.n_shape, model.n_expression, [], free)
        self.kernels = (KERNEL_START, KERNEL_END)

    def terms(self, vertices: np.ndarray, kernel: float) -> list[Term]:
        model, w, region = self.model, self.w, self.region
        normals = vertex_normals(vertices, model.faces)
        found, _ = nearest(self.queries, vertices[self.outside_eyes])
        found = self.outside_eyes[found]
        kept = self.in_region[found]
        terms = [_scan_to_model(self.queries[kept], found[kept], vertices, normals, kernel,
                                w["scan_to_model"], len(self.queries))]
        nearest_point, gap = nearest(vertices[region], self.scan)
        distance = np.einsum("nc,nc->n", vertices[region] - self.scan[nearest_point], normals[region])
        row_weights = _robust(distance, kernel) * (gap < 3 * kernel)
        terms.append(Term("model_to_scan", region[:, None], np.ones((len(region), 1)), self.scan[nearest_point],
                          w["model_to_scan"], normals[region], row_weights))
        if self.marks is not None:
            terms.append(landmark_term(model, self.embedding, self.marks, w["landmarks"]))
        return terms

    def run(self, theta: np.ndarray, first: int, last: int, total: int, probe: bool = False) -> tuple[np.ndarray, float]:
        """Outer iterations ``first..last-1`` of a schedule of ``total``; returns ``theta`` and,
        for a probe, the two-way trimmed distance it reaches (how starts are compared)."""
        for iteration in range(first, last):
            if self.clock.stopped:
                break
            fraction = iteration / max(total - 1, 1)
            kernel = self.kernels[0] * (self.kernels[1] / self.kernels[0]) ** fraction
            annealing = 10.0 ** (1.0 - fraction)  # stronger priors while correspondences are rough
            self.problem = Problem(
                self.model.n_shape, self.model.n_expression, self.terms(scaled_vertices(self.model, theta), kernel),
                self.free, shape_prior=self.w["shape_prior"] * annealing,
                expression_prior=self.w["expression_prior"] * annealing, pose_prior=self.w["pose_prior"] * annealing,
            )
            theta = run_stage(self.model, self.problem, theta, _steps(self.model, 2), self.clock,
                              "start" if probe else "fit", rounds=1)
        if not probe:
            return theta, 0.0
        # compare starts by robust two-way distances in which every point counts (a kernel that
        # saturates rather than drops far points: a head that slides off the scan gains nothing)
        vertices = scaled_vertices(self.model, theta)
        normals = vertex_normals(vertices, self.model.faces)
        found, to_head = nearest(self.queries, vertices[self.outside_eyes])
        found = self.outside_eyes[found]
        to_head = _near_plane_distance(self.queries - vertices[found], normals[found], to_head)
        nearest_point, to_scan = nearest(vertices[self.region], self.scan)
        to_scan = _near_plane_distance(vertices[self.region] - self.scan[nearest_point], normals[self.region], to_scan)
        return theta, float(np.mean(_saturating(to_head)) + np.mean(_saturating(to_scan)))

    def point_residual(self, theta: np.ndarray) -> float:
        """RMS point-to-plane distance (metres) of the scan points the final kernel keeps."""
        vertices = scaled_vertices(self.model, theta)
        normals = vertex_normals(vertices, self.model.faces)
        found, _ = nearest(self.queries, vertices[self.outside_eyes])
        ids = self.outside_eyes[found]
        kept = self.in_region[ids]
        distance = np.einsum("nc,nc->n", self.queries[kept] - vertices[ids[kept]], normals[ids[kept]])
        inliers = distance[_robust(distance, KERNEL_END) > 0.5]
        return float(np.sqrt(np.mean(inliers**2))) if len(inliers) else 0.0


def _scan_to_model(points: np.ndarray, ids: np.ndarray, vertices: np.ndarray, normals: np.ndarray, kernel: float, weight: float, count: int) -> Term:
    """Point-to-plane pulls of scan ``points (N, 3)`` on their nearest vertices ``ids (N,)``.

    Points sharing a vertex share its plane, so their squared distances sum to one row per
    vertex (weight = the sum of their weights, target = their weighted mean) plus a constant:
    the same cost and Gauss-Newton step from a few thousand rows instead of every point.
    """
    distance = np.einsum("nc,nc->n", points - vertices[ids], normals[ids])
    robust = _robust(distance, kernel)
    unique, inverse = np.unique(ids, return_inverse=True)
    total = np.bincount(inverse, weights=robust, minlength=len(unique))
    mean = np.stack([np.bincount(inverse, weights=robust * points[:, c], minlength=len(unique)) for c in range(3)], axis=1)
    mean /= np.maximum(total, 1e-300)[:, None]
    # Term divides by its row count; scale so the cost is that of all `count` points
    return Term("scan_to_model", unique[:, None], np.ones((len(unique), 1)), mean,
                weight * len(unique) / max(count, 1), normals[unique], total)


def _steps(model: FitModel, numpy_steps: int) -> int:
    return numpy_steps if model.backend == "numpy" else 8 * numpy_steps


def _robust(distance: np.ndarray, kernel: float) -> np.ndarray:
    """Geman-McClure weights ``(N,)`` of residuals at a kernel scale (metres)."""
    ratio = (distance / kernel) ** 2
    return 1.0 / (1.0 + ratio) ** 2


def _near_plane_distance(difference: np.ndarray, normals: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Per pair ``(N,)``: the distance along the head's ``normals (N, 3)`` of the pair's
    ``difference (N, 3)`` where its point distance ``(N,)`` is within PROBE_GAP (the surfaces
    meet: measure across, not along), else the point distance."""
    along = np.abs(np.einsum("nc,nc->n", difference, normals))
    return np.where(distance < PROBE_GAP, along, distance)


def _saturating(distance: np.ndarray, kernel: float = PROBE_KERNEL) -> np.ndarray:
    """Geman-McClure costs ``(N,)`` in 0..1 of distances (metres)."""
    ratio = (distance / kernel) ** 2
    return ratio / (1.0 + ratio)


def _place(theta: np.ndarray, model: FitModel, s: float, rotation: np.ndarray, translation: np.ndarray, fit_scale: bool) -> None:
    global_pose, transl, log_scale = rigid_parameters(s, rotation, translation, rest_root(model, theta))
    k = model.n_coefficients
    theta[k : k + 3] = global_pose
    theta[k + 15 : k + 18] = transl
    theta[-1] = log_scale if fit_scale else 0.0


def _eyeballs(model: FitModel) -> np.ndarray:
    found = [model.masks[name] for name in ("left_eyeball", "right_eyeball") if name in model.masks]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def _region(model: FitModel, regions: Iterable[str]) -> np.ndarray:
    names = list(regions)
    if not model.masks:
        return np.setdiff1d(np.arange(model.n_vertices), _eyeballs(model))
    unknown = [name for name in names if name not in model.masks]
    if unknown or not names:
        raise FlameParameterError(f"regions {unknown or names}: expected some of {sorted(model.masks)}")
    return np.unique(np.concatenate([model.masks[name] for name in names]))


def _scan_points(points: object, faces: object, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """The scan as at most ``max_points`` points ``(N, 3)``, in a random order."""
    if int(max_points) < 100:
        raise FlameParameterError(f"max_points = {max_points}: expected at least 100")
    if faces is not None:
        vertices = check_points("points", points)
        try:
            triangles = np.asarray(faces, dtype=np.int64)
        except (TypeError, ValueError):
            raise FlameParameterError("faces: expected an (F, 3) array of vertex indices") from None
        if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0:
            raise FlameParameterError(f"faces: expected shape (F, 3), got {triangles.shape}")
        if triangles.min() < 0 or triangles.max() >= len(vertices):
            raise FlameParameterError(f"faces: indices must be in 0..{len(vertices) - 1}")
        return sample_surface(vertices, triangles, int(max_points), rng)
    scan = check_points("points", points, minimum=100)
    if len(scan) > max_points:
        return scan[rng.choice(len(scan), size=int(max_points), replace=False)]
    return scan[rng.permutation(len(scan))]
