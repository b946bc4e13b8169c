"""Export files: datasets streamed as CSV, JSON, NDJSON or XLSX, and their records."""
