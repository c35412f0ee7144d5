"""The reference library: references and images, lineage, packs, provenance."""
