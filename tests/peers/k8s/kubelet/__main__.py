"""python -m tests.peers.k8s.kubelet run [kubelet flags] | start|stop|restart|status (see service.py)."""

import sys

from tests.peers.k8s.kubelet.service import main

sys.exit(main())
