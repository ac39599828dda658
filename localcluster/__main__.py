"""`python -m localcluster build|images|up|down|status|kubeconfig`: the local control plane's CLI."""

import argparse

from . import cluster, components, images


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument("command", choices=["build", "images", "up", "down", "status", "kubeconfig", "openapi"])
    command = parser.parse_args().command
    if command == "build":
        for name, path in components.build_all().items():
            print(f"{name}: {path}")
        if cluster.real_node_wanted():
            for path in images.build_all():
                print(f"image: {path}")
    elif command == "images":  # the node's container images, as archives for `ctr images import`
        for path in images.build_all():
            print(path)
    elif command == "openapi":
        print(components.kubernetes_openapi())
    elif command == "kubeconfig":
        print(cluster.kubeconfig_path())
    else:
        getattr(cluster, command)()


if __name__ == "__main__":
    main()
