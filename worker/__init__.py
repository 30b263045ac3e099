"""Streaming scoring worker: Kafka events in, ALOCC scores to Redis, exclusion events out."""
