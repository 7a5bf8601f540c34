"""PyTorch definitions of the networks edgevision builds itself (YOLOX, OpenPose body).

Every module here imports torch at the top: import them only from functions that need
torch (``build_yolox``, ``build_openpose``), so ``import edgevision`` works without it.
The zoo's family discovery imports this package's ``__init__`` only, which imports nothing.
"""
