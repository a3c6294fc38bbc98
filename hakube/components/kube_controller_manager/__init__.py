"""kube_controller_manager: not written yet."""


def host_files(ctx, host):
    return []
