"""Text encoders for the hybrid model: one file each, registered in ``ENCODERS``."""

from deepmovie.models.hybrid.encoders import cnn, cnn_kan, lstm, minilm, resnet, transformer  # noqa: F401
from deepmovie.models.hybrid.encoders.base import ENCODERS, Encoder, build_encoder

__all__ = ["ENCODERS", "Encoder", "build_encoder"]
