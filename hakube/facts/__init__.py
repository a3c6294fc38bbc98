"""Facts: small named readers of the cluster's state, each a command or request plus a
parser, shared by the deploy engine, `hakube status` and the chaos monitor (none of them
reads the same fact its own way). Parsers are pure and fixture-tested
(tests/unit/fixtures/facts/<reader>/): raw output in, parsed fact out.

    host      files, services, packages, OS (the deploy's planning facts)
    etcd      member status, health, membership (etcdctl over SSH, or the JSON gateway)
    vip       who holds the VIP, and keepalived's or pacemaker's view of it
    haproxy   each load balancer's view of each apiserver backend
    kube      nodes and their readiness
    apiserver /readyz of one apiserver
"""
