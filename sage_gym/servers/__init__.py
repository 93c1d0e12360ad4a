"""The HTTP servers sage_gym ships. Importing this package starts and imports neither.

    env_server.py        SageDialogue over OpenEnv's HTTP/WebSocket environment protocol
                         (`python -m sage_gym.servers.env_server`, `uvicorn sage_gym.servers.env_server:app`)
    env_access.py        who may use the environment server: token, loopback, Origin, Host, Content-Type
    simulator_server.py  the built-in simulated user behind an OpenAI-compatible chat endpoint, with
                         fault injection (`python -m sage_gym.servers.simulator_server`)
    uvicorn_thread.py    a uvicorn server in a background thread on a socket bound first (both servers)
"""
