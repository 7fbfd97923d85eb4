"""Pure-PyTorch DeepLab models built from the run config (`models.build.build_model`)."""

from models.build import build_model, count_params_m, register, registered

__all__ = ["build_model", "count_params_m", "register", "registered"]
