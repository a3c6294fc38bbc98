"""The host steps: facts (reachable, systemd, architecture), packages, binaries, certificates."""

from __future__ import annotations

from pathlib import Path

from ... import paths
from ...errors import HakubeError
from ...facts import host as facts
from .. import originals, services
from ..changes import Desired
from ..context import Deploy
from ..plan import Action, execute


async def phase_facts(d: Deploy) -> None:
    with d.ui.phase("facts"):
        async def one(h: str):
            info = await facts.os_info(d.conns[h])
            if not info.systemd:
                raise HakubeError(f"{h}: systemd is not running there; hakube manages services with systemd")
            if info.arch not in ("x86_64", "aarch64"):
                raise HakubeError(f"{h}: unsupported architecture {info.arch}")
            d.ui.info(h, f"{info.id} {info.version} {info.arch}")
            if not d.dry_run:
                await record_before(d, h)
        await d.each(d.conns, one)


async def record_before(d: Deploy, h: str) -> None:
    """What `h` has of every path and unit hakube may touch, before this run changes
    anything (engine/originals.py): what `hakube reset` puts back."""
    known = originals.parse(await facts.read_text(d.conns[h], originals.MANIFEST))
    cmd = originals.record_command(originals.candidates(d, h), known)
    if cmd:
        await d.conns[h].run(cmd, what="recording what the host has before hakube changes it")


# Services are held back while installing (policy-rc.d): hakube starts them itself, configured.
_INSTALL = ("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && "
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends {packages}; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc")


async def phase_packages(d: Deploy) -> None:
    with d.ui.phase("packages") as report:
        async def one(h: str):
            wanted = sorted({p for c in d.host(h).components for p in services.PACKAGES.get(c, [])})
            missing = await facts.missing_packages(d.conns[h], wanted)
            if not missing:
                d.ui.info(h, f"all {len(wanted)} packages installed")
                return
            cmd = _INSTALL.format(packages=" ".join(missing))
            await execute(d, report, [Action(h, f"install {' '.join(missing)}",
                                             lambda: d.conns[h].run(cmd, what="installing packages", timeout=900))])
        await d.each(d.conns, one)


def _binary_source(d: Deploy, name: str) -> Path | None:
    base = d.loaded.resolve(d.loaded.cluster.spec.distribution.binaries)
    if base is None:
        return None
    for p in (base / name, base / "bin" / name):
        if p.is_file():
            return p
    raise HakubeError(f"spec.distribution.binaries: {name} is not in {base} (nor in {base}/bin); "
                      "fix: put the release binaries there, or remove the field to download them")


async def phase_binaries(d: Deploy) -> None:
    if d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("binaries") as report:
        async def one(h: str):
            names = sorted({b for c in d.host(h).components for b in services.KUBERNETES_BINARIES.get(c, [])})
            if not names:
                return
            desired, downloads = [], []
            for n in names:
                src = _binary_source(d, n)
                if src is None:
                    downloads.append(n)
                else:
                    desired.append(Desired.binary(f"{paths.BIN}/{n}", src, d.local_digest(src)))
            actions = await d.file_actions(h, desired)
            for n in downloads:
                actions += await _download_actions(d, h, n)
            if not actions:
                d.ui.info(h, f"{', '.join(names)} up to date")
            await execute(d, report, actions)
        await d.each(d.conns, one)


async def _download_actions(d: Deploy, host: str, name: str) -> list[Action]:
    """Official release download on the host, verified against the published sha256."""
    ver = d.topo.version if d.topo.version.startswith("v") else f"v{d.topo.version}"
    url = f"https://dl.k8s.io/release/{ver}/bin/linux/$(dpkg --print-architecture)/{name}"
    dest = f"{paths.BIN}/{name}"
    check = (f"want=$(curl -fsSL {url}.sha256) && [ -f {dest} ] && "
             f"[ \"$(sha256sum {dest} | cut -d' ' -f1)\" = \"$want\" ]")
    if (await d.conns[host].run(check, check=False, timeout=60)).ok:
        return []
    d.changed.setdefault(host, set()).add(dest)
    cmd = (f"set -e; want=$(curl -fsSL {url}.sha256); curl -fsSL -o {dest}.hakube-tmp {url}; "
           f"echo \"$want  {dest}.hakube-tmp\" | sha256sum -c --quiet; chmod 755 {dest}.hakube-tmp; "
           f"mv -f {dest}.hakube-tmp {dest}")
    return [Action(host, f"download {name} {ver}",
                   lambda: d.conns[host].run(cmd, what=f"downloading {name}", timeout=600))]


async def phase_pki(d: Deploy) -> None:
    with d.ui.phase("certificates") as report:
        for c in d.pki.changes:  # done locally when the state directory was loaded
            d.ui.change(report, "local", c)

        async def one(h: str):
            actions = await d.converge_files(report, h, [Desired.of(f) for f in d.pki.files_for(d.host(h))])
            if not actions:
                d.ui.info(h, "certificates up to date")
        await d.each(d.conns, one)
