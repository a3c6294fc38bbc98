"""Templates are safe on their own: hostile values from the spec are refused or contained.

The spec's validation refuses such values up front; these tests bypass it (a loaded,
valid cluster is copied with some fields replaced, which pydantic does not re-validate)
and show that each rendered file then either is refused with a clear error, or still
parses with the hostile value held inside one string and nothing else changed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hakube.components import base, keepalived, pacemaker
from hakube.errors import HakubeError
from hakube.render import Rendered, render
from hakube.spec import load
from hakube.spec.model import K3sOptions, Taint
from hakube.topology import derive

from .conftest import FIXTURES, SECRETS
from .test_node_components import exec_args

KUBELET_CONFIG = "/etc/kubernetes/kubelet-config.yaml"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
APISERVER_UNIT = "/etc/systemd/system/kube-apiserver.service"


def patched(model: Any, path: list, value: Any) -> Any:
    """`model` with the field at `path` replaced, without validation (pydantic model_copy)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(model, list):
        out = list(model)
        out[head] = patched(model[head], rest, value)
        return out
    if isinstance(model, dict):
        return {**model, head: patched(model.get(head), rest, value)}
    return model.model_copy(update={head: patched(getattr(model, head), rest, value)})


def hostile(spec: str, *changes: tuple[list, Any]) -> Rendered:
    cluster = load(FIXTURES / "specs" / f"{spec}.yaml").cluster
    for path, value in changes:
        cluster = patched(cluster, path, value)
    return render(derive(cluster), SECRETS)


def files(r: Rendered, host: str) -> dict[str, str]:
    return {f.path: f.content for f in r.hosts[host]}


# ---- refused: formats that cannot hold the value ------------------------------------------------

INJECT_NOTIFY = 'eth0\n    notify_master "/bin/sh -c \'touch /tmp/pwned\'"'
INJECT_PRIMITIVE = "ens3 \\\nprimitive evil ocf:heartbeat:Dummy"


@pytest.mark.parametrize("spec,changes,file,value", [
    # a newline in the VIP interface would add a notify_master command to keepalived.conf
    ("ha3", [(["spec", "control_plane", "vip", "interface"], INJECT_NOTIFY)], "keepalived.conf", "eth0"),
    # without a newline, a space or a brace would still end the token
    ("ha3", [(["spec", "control_plane", "vip", "interface"], "eth0 }")], "keepalived.conf", "eth0 }"),
    # a newline in pacemaker's interface would add a crm primitive
    ("pacemaker", [(["spec", "control_plane", "vip", "interface"], INJECT_PRIMITIVE)], "", "ens3"),
    # a newline in a kubelet argument would start a new unit directive
    ("k8s127", [(["spec", "kubernetes", "kubelet_extra_args"], {"v": "2\nExecStartPre=/bin/sh -c id"})],
     "kubelet", "--v=2"),
    ("k8s127", [(["spec", "kubernetes", "apiserver_extra_args"], {"anonymous-auth": "false\nUser=nobody"})],
     "kube-apiserver", "--anonymous-auth=false"),
    # labels go into --node-labels: no newline, and no ',' that would add another label
    ("ha3", [(["spec", "hosts", 3, "labels"], {"team": "web\nExecStartPre=/bin/id"})], "", "team=web"),
    ("ha3", [(["spec", "hosts", 3, "labels"], {"team": "web,node-role.kubernetes.io/master="})],
     "--node-labels", "team=web"),
    # a feature gate named with '=' or ',' would set other gates
    ("k8s127", [(["spec", "kubernetes", "feature_gates"], {"A=false,AllAlpha": True})], "--feature-gates", "A="),
    # host and cluster names reach every format
    ("ha3", [(["spec", "hosts", 0, "name"], "server-1\nExecStart=/bin/id")], "", "server-1"),
    ("ha3", [(["metadata", "name"], "demo\n  notify_master /bin/id")], "", "demo"),
    ("ha3", [(["spec", "hosts", 0, "name"], "srv#1")], "", "srv#1"),
    ("ha3", [(["spec", "network", "cluster_domain"], "cluster.local {\n  forward . 6.6.6.6\n}")], "", "cluster.local"),
])
def test_unholdable_values_are_refused_with_a_clear_error(spec, changes, file, value) -> None:
    with pytest.raises(HakubeError) as e:
        hostile(spec, *changes)
    msg = str(e.value)
    assert "cannot render" in msg and "cannot be written" in msg, msg
    assert file in msg and repr(value)[1:-1] in msg, msg
    assert "hakube validate" in msg  # the fix: correct the spec, validate names the field
    assert "\n" not in msg  # the hostile value is shown escaped, not printed raw


def test_keepalived_and_crm_refusals_name_the_file() -> None:
    with pytest.raises(HakubeError, match=r"keepalived files of host server-1: .* into keepalived\.conf: "
                                          r"it contains a line break"):
        hostile("ha3", (["spec", "control_plane", "vip", "interface"], INJECT_NOTIFY))
    with pytest.raises(HakubeError, match=r"pacemaker files of host .*into (corosync\.conf|pacemaker\.crm)"):
        hostile("pacemaker", (["spec", "control_plane", "vip", "interface"], INJECT_PRIMITIVE))


# ---- contained: YAML, JSON and unit files hold the value as one string ---------------------------

# Each tries to leave its string: a quote, a newline, then keys that would open the kubelet.
BREAKOUT = 'x"\nreadOnlyPort: 10255\nauthentication: {anonymous: {enabled: true}}\n# }; $(id)'


def test_a_taint_value_cannot_rewrite_kubelet_config() -> None:
    r = hostile("k8s127", (["spec", "hosts", 4, "taints"], [Taint.model_construct(key="gpu", value=BREAKOUT,
                                                                                   effect="NoExecute")]))
    cfg = yaml.safe_load(files(r, "agent-2")[KUBELET_CONFIG])
    assert cfg["readOnlyPort"] == 0
    assert cfg["authentication"]["anonymous"] == {"enabled": False}
    assert cfg["registerWithTaints"] == [{"key": "gpu", "value": BREAKOUT, "effect": "NoExecute"}]


def test_hostile_strings_stay_inside_their_yaml_and_json_strings() -> None:
    url = "http://hook.example/x'\nreceivers: []\n#"
    r = hostile("ha3",
                (["spec", "addons", "monitoring", "webhook_url"], url),
                (["spec", "addons", "coredns", "image"], 'img:1"\nkind: Secret\n'),
                (["spec", "addons", "metallb", "addresses"], ["192.168.56.200-192.168.56.210", BREAKOUT]))
    am = yaml.safe_load(files(r, "server-1")["/etc/prometheus/alertmanager.yml"])
    assert [rc["webhook_configs"][0]["url"] for rc in am["receivers"]] == [url]
    docs = {d["kind"]: d for d in yaml.safe_load_all(next(f.content for f in r.cluster
                                                           if f.path == "manifests/coredns.yaml")) if d}
    assert "Secret" not in docs
    assert docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == 'img:1"\nkind: Secret\n'
    pool = next(yaml.safe_load_all(next(f.content for f in r.cluster if f.path == "manifests/metallb.yaml")))
    assert pool["spec"]["addresses"] == ["192.168.56.200-192.168.56.210", BREAKOUT]


@pytest.mark.skipif(not shutil.which("amtool"), reason="amtool not installed: run scripts/setup.sh")
def test_alertmanager_accepts_a_contained_webhook_url(tmp_path: Path) -> None:
    r = hostile("ha3", (["spec", "addons", "monitoring", "webhook_url"], "http://hook.example/a'b\"c#d"))
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(files(r, "server-1")["/etc/prometheus/alertmanager.yml"])
    p = subprocess.run(["amtool", "check-config", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_k3s_config_holds_hostile_labels_taints_and_arguments() -> None:
    r = hostile("k3s3",
                (["spec", "hosts", 0, "labels"], {"team": BREAKOUT.replace(",", "")}),
                (["spec", "hosts", 0, "taints"], [Taint.model_construct(key="k", value=BREAKOUT, effect="NoSchedule")]),
                (["spec", "k3s"], K3sOptions.model_construct(
                    disable=["traefik", "x\ncluster-init: true"], flannel_backend="vxlan",
                    extra_server_args=["--kubelet-arg=v=2 --anonymous-auth=true; #"], extra_agent_args=[])))
    fs = files(r, "k3s-2")
    cfg = yaml.safe_load(fs["/etc/rancher/k3s/config.yaml"])
    assert "cluster-init" not in cfg  # server-2 joins; the disable entry did not make it bootstrap
    assert "x\ncluster-init: true" in cfg["disable"]
    one = yaml.safe_load(files(r, "k3s-1")["/etc/rancher/k3s/config.yaml"])
    assert f"k={BREAKOUT}:NoSchedule" in one["node-taint"]
    assert any(label.startswith("team=x\"") for label in one["node-label"])
    words = exec_args(fs["/etc/systemd/system/k3s.service"])
    assert words[1:] == ["server", "--kubelet-arg=v=2 --anonymous-auth=true; #"]  # one argument


def test_unit_arguments_with_spaces_and_quotes_stay_one_word() -> None:
    evil = 'x" --anonymous-auth=true; #'
    r = hostile("k8s127",
                (["spec", "kubernetes", "apiserver_extra_args"], {"audit-log-path": evil}),
                (["spec", "hosts", 3, "labels"], {"tier": evil}))
    api = exec_args(files(r, "server-1")[APISERVER_UNIT])
    assert f"--audit-log-path={evil}" in api and "--anonymous-auth=true" not in api
    assert "--anonymous-auth=false" in api
    kubelet = exec_args(files(r, "agent-1")[KUBELET_UNIT])
    assert f"--node-labels=hakube.dev/role=agent,tier={evil}" in kubelet
    assert "--anonymous-auth=true" not in kubelet


def test_etcd_member_names_cannot_make_up_members() -> None:
    with pytest.raises(HakubeError, match="initial-cluster"):
        hostile("ha3", (["spec", "hosts", 0, "name"], "server-1=https://6.6.6.6:2380,evil"))


# ---- the filters themselves -------------------------------------------------------------------------

NASTY = ["", "plain", 'a"b', "a\\b", "line\nbreak", "tab\there", "cr\r", "\x00\x07\x1b[31m", "\x7f\x85",
         "\u2028\u2029", "\ufeff\u202e", "é ü 中文", "emoji 🚀", "#: - [] {} & * ! | > ' % @ `", "null", "true",
         "0755", "1e3", "~", "- x", "? y", ": z"]


@pytest.mark.parametrize("value", NASTY)
def test_yaml_str_reads_back_as_exactly_the_value(value: str) -> None:
    env = base._env(str(Path(base.__file__).parent))
    quoted = env.from_string("{{ v | yaml_str }}").render(v=value)
    assert "\n" not in quoted
    assert yaml.safe_load(f"key: {quoted}\nafter: 1\n") == {"key": value, "after": 1}
    assert json.loads(quoted) == value


@pytest.mark.parametrize("value", ["eth0", "ens3", "br-lan.10", "192.168.1.10", "10.244.0.0/16", "server-1",
                                   "https://10.0.0.1:6443/readyz"])
def test_word_passes_plain_tokens(value: str) -> None:
    env = base._env(str(Path(base.__file__).parent))
    assert env.from_string("{{ v | word }}").render(v=value) == value


@pytest.mark.parametrize("value", ["", "-x", "a b", "a\nb", "a#b", "a;b", "a}b", 'a"b', "a'b", "a$b", "a\\b",
                                   "a%b", "a!b", "a`b", "a*b", "é"])
def test_word_refuses_anything_else(value: str) -> None:
    env = base._env(str(Path(base.__file__).parent))
    with pytest.raises(base.UnsafeValue):
        env.from_string("{{ v | word }}").render(v=value)


def test_every_interpolation_refuses_line_breaks_and_control_characters() -> None:
    env = base._env(str(Path(keepalived.__file__).parent))
    for value in ("a\nb", "a\rb", "a\x1bb", "a\u2028b", "a\u202eb"):
        with pytest.raises(base.UnsafeValue):
            env.from_string("# a comment about {{ v }}\n").render(v=value)
    assert env.from_string("# {{ v }}\n").render(v="ok: any # text } ;") == "# ok: any # text } ;\n"


def test_systemd_quote_refuses_what_a_unit_line_cannot_hold() -> None:
    assert base.systemd_quote("") == '""'
    assert shlex.split(base.systemd_quote('a "b" c')) == ['a "b" c']
    for value in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(base.UnsafeValue):
            base.systemd_quote(value)


def test_pacemaker_renders_when_values_are_plain() -> None:
    r = hostile("pacemaker")
    crm = files(r, "server-1")[pacemaker.CRM_SCRIPT]
    assert sum(line.startswith("primitive ") for line in crm.splitlines()) == 2
