"""`docker build`: the Dockerfile language and the classic builder's step executor.

Modules: `dockerfile` (parser), `expand` (variable expansion), `dockerignore` (patterns),
`context` (the build context tar), `cache` (step cache), `builder` (runs the steps).
"""
