"""Placement decisions, pure: requests, candidates, filters, weighers and the planner.

Objects of more than three fields (`Decision`, `PlacementRequest`, the candidates,
`PlannerConfig`) are keyword-only dataclasses: a call site names every field it sets.
"""
