"""Helpers for tests that run against a real control plane."""
