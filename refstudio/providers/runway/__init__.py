"""Runway's own API (``api.dev.runwayml.com``): tagged references, ``runway://`` uploads, task
states with failure codes, cancels, and the organisation's credits and daily limits."""
