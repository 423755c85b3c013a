"""Rendering data without Blender: cameras, ground truth, segmentation labels, sampling,
manifests, contact sheets and the PNG/EXR image files.
"""
