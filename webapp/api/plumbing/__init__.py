"""What every resource module shares: the error shape, request parsing, OpenAPI, responses."""
