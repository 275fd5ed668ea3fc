"""Keras model builders. Each takes a config and returns an uncompiled ``keras.Model`` with named inputs."""
