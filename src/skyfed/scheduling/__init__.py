"""Placement decisions, pure: requests, candidates, filters, weighers and the planner."""
