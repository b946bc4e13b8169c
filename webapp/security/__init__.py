"""Who may do what: tokens, admission of each request, revocation, request budgets, signed links."""
