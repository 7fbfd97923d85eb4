"""Pure-PyTorch DeepLab models built from the run config (`models.build.build_model`).

Nothing is imported here, so that ``models.errors`` and ``models.families`` (torch-free) import
without torch: the name codec and sweep.py's exit-2 family read them.
"""
