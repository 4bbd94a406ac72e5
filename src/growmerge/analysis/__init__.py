"""Analyses beyond the paper that read trained models (representational similarity)."""
