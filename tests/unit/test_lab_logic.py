"""Pure logic of the lab: subnets, addresses, names, nftables text, recipe hashing, OCI
archives and the generated cluster.yaml. No root, no podman, no network."""

from __future__ import annotations

import ipaddress
import json
import tarfile

import pytest

from hakube.lab import netfilter, oci, plan
from hakube.lab.image import recipe, recipe_hash


# ---- subnets -----------------------------------------------------------------------------


def test_subnet_index_maps_into_the_pool():
    assert plan.subnet(1) == ipaddress.IPv4Network("10.213.1.0/24")
    assert plan.subnet(254) == ipaddress.IPv4Network("10.213.254.0/24")
    assert plan.index_of(ipaddress.IPv4Network("10.213.7.0/24")) == 7
    assert plan.index_of(ipaddress.IPv4Network("10.214.7.0/24")) is None


def test_allocation_starts_at_the_names_preferred_index_and_is_stable():
    first = plan.allocate_index("demo", set())
    assert first == plan.preferred_index("demo")
    assert plan.allocate_index("demo", set()) == first


def test_allocation_skips_used_subnets_and_wraps_around():
    pref = plan.preferred_index("demo")
    assert plan.allocate_index("demo", {pref}) == (pref % 254) + 1
    everything_but_3 = set(range(1, 255)) - {3}
    assert plan.allocate_index("demo", everything_but_3) == 3


def test_allocation_never_uses_index_0_or_255_and_reports_a_full_pool():
    for name in ("a", "b", "hakube", "hktest-x", "z" * 32):
        assert 1 <= plan.allocate_index(name, set()) <= 254
    assert plan.allocate_index("demo", set(range(1, 255))) is None


def test_two_labs_never_get_the_same_subnet():
    used: set[int] = set()
    for name in ("one", "two", "three", "four"):
        idx = plan.allocate_index(name, used)
        assert idx not in used
        used.add(idx)


# ---- machines and addresses ----------------------------------------------------------------


def test_machine_names_and_addresses_follow_the_plan():
    net = plan.subnet(5)
    got = [(m.name, m.role, str(m.address)) for m in plan.machines(net, 3, 2, 1, etcd=2)]
    assert got == [
        ("server-1", "server", "10.213.5.11"),
        ("server-2", "server", "10.213.5.12"),
        ("server-3", "server", "10.213.5.13"),
        ("agent-1", "agent", "10.213.5.51"),
        ("agent-2", "agent", "10.213.5.52"),
        ("lb-1", "loadbalancer", "10.213.5.151"),
        ("etcd-1", "etcd", "10.213.5.190"),
        ("etcd-2", "etcd", "10.213.5.191"),
    ]
    assert str(plan.host_address(net)) == "10.213.5.1"
    assert str(plan.api_vip(net)) == "10.213.5.200"


def test_role_ranges_do_not_overlap_each_other_the_host_or_the_vips():
    net = plan.subnet(9)
    ms = plan.machines(net, 39, 99, 39, etcd=9)
    addrs = [m.address for m in ms]
    assert len(set(addrs)) == len(addrs)
    first, last = plan.vip_range(net)
    assert all(not first <= a <= last for a in addrs)
    assert plan.host_address(net) not in addrs


@pytest.mark.parametrize("counts", [(40, 0, 0), (1, 100, 0), (1, 0, 40), (-1, 0, 0), (0, 0, 0), (1, 0, 0, 10)])
def test_out_of_range_counts_are_refused(counts):
    with pytest.raises(ValueError):
        plan.machines(plan.subnet(1), *counts)


def test_interface_names_fit_linux_limit_even_at_the_extremes():
    assert plan.veth(254, "server-39") == "hk254-server-39"
    assert len(plan.veth(254, "agent-99")) <= 15
    assert plan.bridge(254) == "hk254-br"


@pytest.mark.parametrize("name,ok", [("hakube", True), ("hktest-ab12", True), ("a", True),
                                     ("Bad", False), ("-x", False), ("x-", False),
                                     ("a" * 33, False), ("a_b", False)])
def test_lab_names(name, ok):
    assert (plan.check_name(name) is None) is ok


def test_host_object_names_carry_the_lab_name_exactly():
    assert plan.container("demo", "server-1") == "hakube-demo-server-1"
    assert plan.netns("demo", "agent-2") == "hakube-demo-agent-2"
    assert plan.volume("demo", "lb-1", "containerd") == "hakube-demo-lb-1-containerd"
    assert plan.nft_table("demo") == "hakube-lab-demo"


# ---- nftables --------------------------------------------------------------------------------

PORTS = {"server-1": "hk5-server-1", "server-2": "hk5-server-2", "agent-1": "hk5-agent-1"}


def test_no_faults_render_empty_accepting_chains():
    text = netfilter.render("hakube-lab-demo", PORTS)
    assert "drop" not in text
    assert text.count("policy accept") == 3
    # replaced as one transaction: create (so delete cannot fail), delete, create
    assert text.splitlines()[1:3] == ["table bridge hakube-lab-demo",
                                      "delete table bridge hakube-lab-demo"]


def test_isolation_drops_both_directions_in_forward_only():
    text = netfilter.render("t", PORTS, isolated=["server-1"])
    forward = text.split("chain forward")[1].split("chain input")[0]
    assert 'iifname "hk5-server-1" drop' in forward
    assert 'oifname "hk5-server-1" drop' in forward
    rest = text.split("chain input")[1]
    assert "drop" not in rest  # this host still reaches an isolated machine


def test_a_cut_drops_exactly_one_pair_and_is_order_independent():
    a = netfilter.render("t", PORTS, cuts=[("server-2", "server-1")])
    b = netfilter.render("t", PORTS, cuts=[("server-1", "server-2"), ("server-2", "server-1")])
    assert a == b
    assert 'iifname "hk5-server-1" oifname "hk5-server-2" drop' in a
    assert 'iifname "hk5-server-2" oifname "hk5-server-1" drop' in a
    assert "agent-1" not in a


def test_a_paused_machine_is_silenced_towards_this_host_too():
    text = netfilter.render("t", PORTS, silenced=["agent-1"])
    assert 'iifname "hk5-agent-1" drop' in text.split("chain input")[1]
    assert 'oifname "hk5-agent-1" drop' in text.split("chain output")[1]


# ---- recipe hashing ------------------------------------------------------------------------------


def test_recipe_hash_changes_with_any_file_or_setting_and_only_then():
    files, settings = recipe()
    h = recipe_hash(files, settings)
    assert len(h) == 12
    assert recipe_hash(dict(reversed(list(files.items()))), dict(settings)) == h
    changed = dict(files, **{"packages.txt": files["packages.txt"] + b"vim\n"})
    assert recipe_hash(changed, settings) != h
    assert recipe_hash(files, dict(settings, suite="trixie")) != h


def test_recipe_lists_every_node_package_the_issue_names():
    files, _ = recipe()
    listed = set((files["packages.txt"] + files["packages-base.txt"]).decode().split())
    for p in ("etcd-server", "haproxy", "keepalived", "nginx", "libnginx-mod-stream", "corosync",
              "pacemaker", "crmsh", "containerd", "runc", "containernetworking-plugins",
              "prometheus-blackbox-exporter", "openssh-server", "systemd-sysv", "dbus"):
        assert p in listed


# ---- OCI archives ---------------------------------------------------------------------------------


def test_oci_archive_is_reproducible_and_named_for_containerd(tmp_path):
    image = oci.Image(ref="registry.k8s.io/pause:3.4", entrypoint=["/pause"],
                      files=[oci.File("pause", b"\x7fELF fake")])
    d1 = oci.write_archive(image, tmp_path / "a.tar")
    d2 = oci.write_archive(image, tmp_path / "b.tar")
    assert d1 == d2
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())
        assert "oci-layout" in names
        ann = index["manifests"][0]["annotations"]
        assert ann["io.containerd.image.name"] == "registry.k8s.io/pause:3.4"
        manifest_digest = index["manifests"][0]["digest"]
        assert manifest_digest == d1
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{d1.split(':')[1]}").read())
        for blob in [manifest["config"], *manifest["layers"]]:
            assert f"blobs/sha256/{blob['digest'].split(':')[1]}" in names


# ---- cluster.yaml ---------------------------------------------------------------------------------


def test_generated_cluster_yaml_is_valid_and_points_at_the_lab(tmp_path, monkeypatch):
    from hakube.lab import binaries, clusterspec, keys, labstate
    from hakube.spec import loads

    monkeypatch.setenv("HAKUBE_HOME", str(tmp_path / "home"))
    k8s_root = tmp_path / "k8s"
    (k8s_root / "bin").mkdir(parents=True)
    (k8s_root / "images").mkdir()
    (k8s_root / "images" / "manifest.json").write_text(
        json.dumps({"sandboxImage": "registry.k8s.io/pause:3.4"}))
    k8s = binaries.Kubernetes("1.20.2", k8s_root)
    lab = labstate.new("demo", 5, "localhost/hakube-node:x", str(k8s_root), 3, 2, 0)
    lab.save()
    keys.ensure(lab)
    assert (lab.key_file.stat().st_mode & 0o777) == 0o600
    text = clusterspec.render(lab, k8s)
    c = loads(text, source=lab.cluster_yaml).cluster
    assert [h.name for h in c.spec.hosts] == ["server-1", "server-2", "server-3", "agent-1", "agent-2"]
    assert str(c.spec.network.node_cidr) == "10.213.5.0/24"
    assert str(c.spec.control_plane.endpoint.vip) == "10.213.5.200"
    assert c.spec.control_plane.vip.interface == "eth0"
    assert c.spec.ssh.host_key_policy == "strict"
    assert c.spec.ssh.key_file == lab.key_file
    assert c.spec.ssh.known_hosts == lab.known_hosts
    assert c.spec.distribution.binaries == k8s_root / "bin"
    known = lab.known_hosts.read_text().splitlines()[1:]
    assert [line.split()[0] for line in known] == [str(m.address) for m in lab.machines]
    assert all(line.split()[1] == "ssh-ed25519" for line in known)


def test_dedicated_load_balancers_get_placement_dedicated(tmp_path, monkeypatch):
    from hakube.lab import binaries, clusterspec, keys, labstate
    from hakube.spec import loads

    monkeypatch.setenv("HAKUBE_HOME", str(tmp_path / "home"))
    (tmp_path / "k8s" / "bin").mkdir(parents=True)
    (tmp_path / "k8s" / "images").mkdir()
    (tmp_path / "k8s" / "images" / "manifest.json").write_text('{"sandboxImage": "p"}')
    lab = labstate.new("demo", 6, "img", str(tmp_path / "k8s"), 3, 1, 2)
    keys.ensure(lab)
    c = loads(clusterspec.render(lab, binaries.Kubernetes("1.20.2", tmp_path / "k8s")),
              source=lab.cluster_yaml).cluster
    assert c.spec.control_plane.load_balancer.placement == "dedicated"
    assert [h.name for h in c.loadbalancers] == ["lb-1", "lb-2"]
