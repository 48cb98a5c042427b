"""Chats on another machine's OpenAI-compatible server: llama-server, vLLM, another Tandem, or anything that
speaks `/v1/chat/completions`.

`sse` splits a server-sent event stream, `figures` reads what a server reports about speculation (llama-server
`timings`, vLLM `metrics.speculative_decoding`, Tandem's own timings, or Prometheus counters before and after
a request), `client` streams a chat as Tandem's own events, `engine` presents a server to the app's worker
like a loaded model, and `ab` runs a plain-then-speculative comparison where the server lets a request choose.
"""
