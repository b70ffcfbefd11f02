"""Shared fixtures: seeded generators of small data, real components only."""
