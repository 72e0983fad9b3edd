"""The model registry: ``@MODELS.register("name")`` on a :class:`Model` subclass makes it usable."""

from deepmovie.models.base import Model
from deepmovie.registry import Registry

MODELS: Registry[type[Model]] = Registry("model")
