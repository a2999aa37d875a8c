"""What every namespace shares: the step engine, configuration, logging, SSH, files, waits, the
lab's own paths and names, the Kubernetes API client, and peer faults."""
