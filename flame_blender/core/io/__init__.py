"""Reading and writing files: the restricted unpickler, .npy/.npz, the FLAME model, landmark,
texture and extra blend-shape files, atomic writes and JSON lines.
"""
