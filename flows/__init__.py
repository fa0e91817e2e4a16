"""Prefect flows: they wire the pipeline's stages together and hold no logic of their own."""

from pipeline.environment import configure_environment

configure_environment()
