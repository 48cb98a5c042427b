"""Will it fit? Hardware detection, model specs from GGUF or catalog numbers, the memory estimate, the
planner that picks quantization / offload / context, fit badges and the catalog pair plan."""
