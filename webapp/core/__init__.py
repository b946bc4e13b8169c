"""Words and helpers every layer shares: time, strict JSON, dimension filters."""
