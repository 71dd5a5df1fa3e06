"""The instructions that only change the image config (ENV, LABEL, ARG, USER, EXPOSE, VOLUME, CMD, …): each
sets its field in the stage's config and commits an image with no new layer, its history line as Docker
writes it (`/bin/sh -c #(nop)  ENV A=1`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiffbox.guest.build import values
from skiffbox.guest.build.instructions import Instruction
from skiffbox.guest.build.state import BuildError, StageState

if TYPE_CHECKING:  # the builder imports this module for its dispatch table
    from skiffbox.guest.build.builder import Builder, Step


def _expanded_pairs(b: Builder, st: StageState, ins: Instruction) -> list[tuple[str, str]]:
    env = b.env_for(st)
    return [(b.expand(k, env), b.expand(v or "", env)) for k, v in ins.kv]


async def env(b: Builder, st: StageState, ins: Instruction) -> None:
    pairs = _expanded_pairs(b, st, ins)
    cur = list(st.cfg.get("Env") or [])
    for k, v in pairs:
        if not k:
            raise BuildError("ENV names can not be blank")
        entry = f"{k}={v}"
        for i, e in enumerate(cur):
            if e.partition("=")[0] == k:
                cur[i] = entry
                break
        else:
            cur.append(entry)
    st.cfg["Env"] = cur
    await b.commit_config(st, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))


async def label(b: Builder, st: StageState, ins: Instruction) -> None:
    pairs = _expanded_pairs(b, st, ins)
    labels = dict(st.cfg.get("Labels") or {})
    for k, v in pairs:
        if not k:
            raise BuildError("LABEL names can not be blank")
        labels[k] = v
    st.cfg["Labels"] = labels
    await b.commit_config(st, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))


async def maintainer(b: Builder, st: StageState, ins: Instruction) -> None:
    st.meta["author"] = ins.args[0]
    await b.commit_config(st, "MAINTAINER " + ins.args[0])


async def arg(b: Builder, st: StageState, ins: Instruction) -> None:
    env = b.env_for(st)
    parts = []
    for key, value in ins.kv:
        key = b.expand(key, env)
        val = b.expand(value, env) if value is not None else None
        st.args[key] = val
        b.args.referenced.add(key)
        parts.append(key if val is None else f"{key}={val}")
    await b.commit_config(st, "ARG " + " ".join(parts))


async def user(b: Builder, st: StageState, ins: Instruction) -> None:
    name = b.expand(ins.args[0], b.env_for(st))
    st.cfg["User"] = name
    await b.commit_config(st, "USER " + name)


async def expose(b: Builder, st: StageState, ins: Instruction) -> None:
    env = b.env_for(st)
    ports: list[str] = []
    for p in ins.args:
        ports += b.expand_words(p, env)
    exposed = dict(st.cfg.get("ExposedPorts") or {})
    for p in ports:
        for key in values.port_specs(p):
            exposed[key] = {}
    st.cfg["ExposedPorts"] = exposed
    await b.commit_config(st, "EXPOSE " + " ".join(sorted(ports)))


async def volume(b: Builder, st: StageState, ins: Instruction) -> None:
    env = b.env_for(st)
    vols = dict(st.cfg.get("Volumes") or {})
    names = []
    for v in ins.args:
        v = b.expand(v, env).strip()
        if not v:
            raise BuildError("VOLUME specified can not be an empty string")
        vols[v] = {}
        names.append(v)
    st.cfg["Volumes"] = vols
    await b.commit_config(st, "VOLUME " + values.go_list(names))


async def stopsignal(b: Builder, st: StageState, ins: Instruction) -> None:
    sig = b.expand(ins.args[0], b.env_for(st))
    if not values.valid_signal(sig):
        raise BuildError(f"Invalid signal: {sig}")
    st.cfg["StopSignal"] = sig
    await b.commit_config(st, "STOPSIGNAL " + sig)


def cmdline(st: StageState, ins: Instruction) -> list[str]:
    """RUN/CMD/ENTRYPOINT's argv: the exec form as written, the shell form through the stage's SHELL."""
    if ins.json:
        return list(ins.args)
    return st.shell + [ins.args[0] if ins.args else ""]


async def cmd(b: Builder, st: StageState, ins: Instruction) -> None:
    argv = cmdline(st, ins)
    st.cfg["Cmd"] = argv
    st.cmd_set = True
    await b.commit_config(st, "CMD " + values.go_quote_list(argv))


async def entrypoint(b: Builder, st: StageState, ins: Instruction) -> None:
    ep = cmdline(st, ins)
    st.cfg["Entrypoint"] = ep
    if not st.cmd_set:
        st.cfg["Cmd"] = None
    await b.commit_config(st, "ENTRYPOINT " + values.go_quote_list(ep))


async def shell(b: Builder, st: StageState, ins: Instruction) -> None:
    st.cfg["Shell"] = list(ins.args)
    await b.commit_config(st, "SHELL " + values.go_list(ins.args))


async def healthcheck(b: Builder, st: StageState, ins: Instruction) -> None:
    hc = dict(ins.health or {})
    old = (st.cfg.get("Healthcheck") or {}).get("Test") or []
    if old and old[0] != "NONE":
        b.out.stream(f"Note: overriding previous HEALTHCHECK: {values.go_list(old)}\n")
    st.cfg["Healthcheck"] = hc
    await b.commit_config(st, "HEALTHCHECK " + values.health_text(hc))


async def onbuild(b: Builder, st: StageState, ins: Instruction) -> None:
    trigger = ins.trigger
    st.cfg["OnBuild"] = list(st.cfg.get("OnBuild") or []) + [trigger]
    await b.commit_config(st, "ONBUILD " + trigger)


STEPS: dict[str, Step] = {
    "env": env, "label": label, "maintainer": maintainer, "arg": arg, "user": user, "expose": expose,
    "volume": volume, "stopsignal": stopsignal, "cmd": cmd, "entrypoint": entrypoint, "shell": shell,
    "healthcheck": healthcheck, "onbuild": onbuild,
}
