"""Alerts: events about runs and data, sent to webhooks, email or a command, de-duplicated in ClickHouse."""
