"""Backups of a cluster's etcd that are proven to restore (`hakube backup`).

    inventory  pure: what a keyspace holds (keys, namespaces, object counts per resource),
               and the sentences that say how two inventories differ
    etcdkeys   etcd's keyspace read at one revision through the JSON gateway, and etcdctl's
               snapshot commands, run on this machine
    scratch    a throw-away etcd on this machine's loopback, restored from a snapshot
    vault      the cluster's CA keys and hakube's secrets, encrypted with a passphrase
    api        take, verify and list backups; each backup is a folder with its manifest

A backup is verified when it is taken: the snapshot is restored into a scratch etcd and its
keys are compared, one by one, with the live cluster's keys read at the snapshot's own
revision (etcd keeps history, so "the live cluster at snapshot time" is exact, not a
second reading a moment later).
"""
