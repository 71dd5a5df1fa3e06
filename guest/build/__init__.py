"""`docker build`: the Dockerfile language and the classic builder's step executor.

Modules: `dockerfile` (text -> instructions) and `instructions` (-> typed stages), `expand` (variable
expansion), `dockerignore` (patterns), `context` (the build context tar), `manager` (builds in the daemon),
`builder` (runs the stages, the step cache), `config_steps`, `file_steps`, `run_step` (the instructions),
`state` (options, stage state, BuildError), `cache` (the step cache on disk).
"""
