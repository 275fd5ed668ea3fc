"""Turning raw posters and overviews into model inputs."""
