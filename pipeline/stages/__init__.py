"""Per-document (map) stages. Each stage is one module, registered in pipeline.registry."""
