"""etcd: not written yet."""


def host_files(ctx, host):
    return []
