"""TLS: postcap's CA, leaf-certificate minting and the per-SNI context creator."""

__all__: list[str] = []
