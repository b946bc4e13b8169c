"""Words and helpers every layer shares: the vocabulary, time, strict JSON, dimension filters."""
