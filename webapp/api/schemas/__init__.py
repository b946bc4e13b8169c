"""The pydantic request and response models of the API (they validate and describe OpenAPI)."""
