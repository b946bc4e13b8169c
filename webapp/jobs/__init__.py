"""The job platform: job rows, enqueueing after commit, state transitions, cancellation."""
