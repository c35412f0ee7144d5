"""The model layer: what each image model takes (references, options, sizes, price)."""
