"""Suites and their data: label spaces, the published / hub / generated sources, corruptions."""
