"""Trio shells that own sockets."""
