"""Evaluation of energies and samples; the public face is :mod:`ebmcore.evaluate`."""
