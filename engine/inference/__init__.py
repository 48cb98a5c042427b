"""Running models: the llama.cpp wrapper, the chat engine, the generation loop with its verifier, sampler
and draft-length controller, text streaming, chat templates and the drafters. With fit.hardware, the only
code that imports llama_cpp."""
