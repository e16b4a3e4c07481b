"""Operations: cron entries, the foreground scheduler, process management and health checks."""
