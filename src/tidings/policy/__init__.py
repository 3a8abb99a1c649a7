"""Delivery policy: who gets a push or a stream event, and when."""
