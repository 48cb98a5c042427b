"""Tandem's engine behind an OpenAI-compatible HTTP server (`tandem serve`, and Server ▸ Start in the app).

`openai_api` reads requests and shapes responses (no HTTP here), `timings` names the speed figures every
response carries, `queue` is the one engine-side request queue (`EngineQueue`; `EngineThread` owns an engine
for `tandem serve`, the app's worker implements the same protocol), `http` is the Starlette application and
`server` runs it under uvicorn with Tandem's safe defaults.
"""
