"""Durable tasks: every mutating request is a task row before the API answers."""
