"""The public API: :class:`Studio` and :class:`AsyncStudio` over the layers below."""
