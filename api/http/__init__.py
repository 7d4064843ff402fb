"""HTTP: the Litestar app, its routes by resource, the API Structs and the error envelope."""
