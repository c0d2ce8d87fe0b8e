"""The FUSE layer."""
