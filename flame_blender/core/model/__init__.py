"""The FLAME model: the forward pass (``lbs``) and its speed paths (torch, numpy, single head),
rotations, model arrays, landmarks, parameter sets and VHAP's teeth.
"""
