"""Converters from public personalization benchmarks' published formats to user logs (``tasks.user_logs``)."""
