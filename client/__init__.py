"""The host side's one engine client, used by `skiff` (cli/), `machine` (machine/host.py, the port forwarder)
and the dashboard; it imports none of them. Layered like docker-py:

    transport.py  Endpoint (unix socket, TCP, TCP+TLS) → HTTP/1.1 requests, responses, hijacked streams
    api.py        APIClient: version negotiation, one method per Engine API endpoint, APIError
    streams.py    decoding streamed bodies: 8-byte-framed stdout/stderr, JSON-object progress streams
    gotemplate.py the Go text/template subset `--format` uses (skiff's and machine's)
"""
