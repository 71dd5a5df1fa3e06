"""`machine dashboard`: a local web app (Kitematic's successor) for machines, containers, images, networks and
volumes, served on 127.0.0.1 with a per-launch token. The server is Starlette on uvicorn; it talks to engines
only through the project's engine client (skiffbox.client); the front end is plain JS modules under static/
with xterm.js vendored (no build step, no node at install time)."""
