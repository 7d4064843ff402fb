"""Security: the request gate, authentication (API keys, JWT, JWKS) and rate limits."""
