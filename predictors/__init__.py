"""Latency, energy and accuracy predictors; they see feature arrays, never ORM rows."""
