"""Join a worker node to a loopback-only Ray cluster, the way `ray start --address` does.

`ray start --address` refuses to add a second node while `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps
Ray on 127.0.0.1 (its multi-node guard), and without that variable Ray advertises the machine's public
address. Tests must stay on loopback, so this script starts the second node through the same `Node` API
the CLI uses, bound to 127.0.0.1. Usage: python join_ray_node.py GCS_ADDRESS NUM_CPUS
"""

import sys

from ray._private.node import Node
from ray._private.parameter import RayParams

if __name__ == "__main__":
    params = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=int(sys.argv[2]))
    params.update_if_absent(include_dashboard=False)
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    print(f"joined node {node.node_id}", flush=True)
