"""The embedded lab (lab.kind: embedded): the machines of a whole lab on this one, no VM and no
internet. Launchers: openstack/ (the loopback OpenStack control plane), build.py (the Kubernetes
programs from their Go modules), sshd.py + simnodes.py + nodes.py (simulated nodes behind a gateway),
netfwd.py (their way to the cloud at 127.0.0.1); steps.py and tasks.py make them converging steps.
The tests use these launchers too; the stand-ins the simulated nodes run stay in tests/peers."""
