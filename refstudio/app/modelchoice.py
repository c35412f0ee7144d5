"""Choosing the provider that runs a model (the rest of a command's model choice is the model
layer's: :mod:`refstudio.models.compose`)."""

from __future__ import annotations

from ..errors import ParameterError
from ..models.spec import ModelSpec

__all__ = ["choose_provider"]


def choose_provider(model: ModelSpec, explicit: str | None, configured: str | None) -> str:
    """The provider that runs ``model``: see the module docstring."""
    from ..providers.registry import default_provider_name, provider_class

    if explicit is not None:
        if not provider_class(explicit).serves(model):
            raise ParameterError(
                f"the {explicit} provider does not serve {model.id}",
                hint=f"drop --provider, or use --provider {model.provider} (or offline)")
        return explicit
    name = default_provider_name(configured)
    if provider_class(name).serves(model):
        return name
    return model.provider
