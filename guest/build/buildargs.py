"""Build arguments as Docker's classic builder resolves them (moby `builder/dockerfile/buildargs.go`).

A `--build-arg` reaches a step only when an ARG declared it: globally (before the first FROM, usable in
FROM lines, and re-declared with a bare `ARG NAME` inside a stage to use its value there) or in the
current stage (with an optional default). The proxy variables are the exception: usable without an ARG
line, and left out of the cache key and history unless an ARG names them. ENV wins over an ARG of the
same name.
"""

from __future__ import annotations

from skiffbox.guest.build.expand import env_map

BUILTIN_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class BuildArgs:
    def __init__(self, options: dict[str, str | None]) -> None:
        self.options = options
        self.meta: dict[str, str | None] = {}  # global ARGs (defaults already expanded)
        self.referenced: set[str] = set()  # every name an ARG declared, for the "not consumed" warning

    def value(self, key: str, declared: dict[str, str | None]) -> tuple[str, bool]:
        """(value, is set) of `key` given the ARGs `declared` in scope."""
        opt = self.options.get(key)
        if key in self.options and opt is not None:
            return opt, True
        default = declared.get(key)
        if default is None:
            meta = self.meta.get(key)
            if meta is not None:
                return meta, True
            return "", False
        return default, key in declared

    def allowed(self, declared: dict[str, str | None]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in list(declared) + [k for k in BUILTIN_ARGS if k not in declared]:
            v, ok = self.value(key, declared)
            if ok:
                out[key] = v
        return out

    def for_run(self, declared: dict[str, str | None], env: list[str] | None) -> dict[str, str]:
        """The build args a RUN sees (and that the step's cache key includes), unless ENV set them."""
        e = env_map(env)
        return {k: v for k, v in self.allowed(declared).items() if k not in e}

    def for_expansion(self, declared: dict[str, str | None], env: list[str] | None) -> dict[str, str]:
        """The variables `$X` expands against in ENV, COPY, WORKDIR, …: ENV first, then build args."""
        out = env_map(env)
        out.update(self.for_run(declared, env))
        return out

    def shown_in_history(self, args: dict[str, str]) -> list[str]:
        """`K=V` pairs for the `|N K=V … cmd` prefix of a RUN step (sorted; proxies only if declared)."""
        return sorted(f"{k}={v}" for k, v in args.items() if k in self.referenced or k not in BUILTIN_ARGS)

    def unused(self) -> list[str]:
        return sorted(k for k in self.options if k not in self.referenced and k not in BUILTIN_ARGS)
