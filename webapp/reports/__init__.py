"""Scheduled reports, without Flask or Celery: five-field cron in an IANA zone (cron), relative
ranges (ranges), schedules (schedules) and their runs, each an export job delivered as report.ready
(runs)."""
